"""Connections to a PostgreSQL ledger: psycopg's, in autocommit mode, pooled per process, speaking the
write side's and the views' `?` parameters; queries sent by libpq's own calls, prepared once a session."""

import atexit
import contextlib
import functools
import itertools
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors, pq
from psycopg.adapt import PyFormat, Transformer
from psycopg_pool import ConnectionPool

# As long as a SQLite writer waits for the writer lock before giving up.
LOCK_TIMEOUT_SECONDS = 60
# Connections a process keeps open at most per database and mode; a Ledger holds one while it is open.
POOL_SIZE = 64
CONNECT_TIMEOUT_SECONDS = 10
# Statements a session keeps prepared at most (psycopg's own limit), the least recently used let go first.
PREPARED_MAX = 100
# After these, the server may no longer find what a prepared statement refers to (an object dropped,
# or made by a transaction rolled back): the session's statements are prepared again (as psycopg's).
_UNPREPARES = re.compile(rb"^(?:DROP|ALTER|ROLLBACK|DISCARD ALL|DEALLOCATE ALL)\b").match
# The statements kept prepared and sent by libpq's own calls: those executed again and again, which the
# server would otherwise parse and plan every time. The rest (DDL, BEGIN, ROLLBACK, SET) go by psycopg.
_KEPT_PREPARED = {"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "VALUES"}
_RESULTS = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)

_pools: dict[tuple[int, str, bool], ConnectionPool] = {}
_pools_lock = threading.Lock()


def _between_parameters(sql: str) -> list[str]:
    """`sql` cut at each `?` outside quotes."""
    pieces, piece, quote = [], [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote  # a doubled quote closes and reopens: still inside
        elif char in "'\"":
            quote = char
        elif char == "?":
            pieces.append("".join(piece))
            piece = []
            continue
        piece.append(char)
    return [*pieces, "".join(piece)]


@functools.lru_cache(maxsize=4096)
def placeholders(sql: str) -> str:
    """`sql` with each `?` outside quotes as psycopg's `%s`, and each literal `%` doubled."""
    return "%s".join(piece.replace("%", "%%") for piece in _between_parameters(sql))


@functools.lru_cache(maxsize=4096)
def numbered(sql: str) -> tuple[bytes, int, bool]:
    """`sql` with each `?` outside quotes as the server's `$1`, `$2`, ...; how many there are; and
    whether it is kept prepared (a query, or a change of rows: not DDL, nor a transaction's commands)."""
    pieces = _between_parameters(sql)
    query = "".join(f"{piece}${n}" for n, piece in enumerate(pieces[:-1], 1)) + pieces[-1]
    return query.encode(), len(pieces) - 1, query.lstrip(" \n(").split(None, 1)[0].upper() in _KEPT_PREPARED


class Rows:
    """A statement's rows, all fetched: what the ledger reads of a cursor."""

    __slots__ = ("rows", "description", "_next")

    def __init__(self, rows: list[tuple], description: list[tuple[str]]):
        self.rows, self.description, self._next = rows, description, 0

    def fetchone(self) -> tuple | None:
        if self._next == len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list[tuple]:
        rows, self._next = self.rows[self._next:], len(self.rows)
        return rows

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.fetchall())


class Prepared:
    """The statements that one session has prepared through `Connection.execute`, by query and
    parameter types, least recently used first; psycopg's own (of pipelines) are apart, named by it."""

    def __init__(self):
        self.names: OrderedDict[tuple[bytes, tuple[int, ...]], bytes] = OrderedDict()
        self.numbers = itertools.count()


# Each session's Prepared, kept with its psycopg connection (pooled, it outlives our Connection).
_prepared: "weakref.WeakKeyDictionary[psycopg.Connection, Prepared]" = weakref.WeakKeyDictionary()


class Connection:
    """A psycopg connection as the write side and the views use it: sqlite3's way (execute returning a
    cursor, `in_transaction`), transactions opened explicitly with BEGIN, `?` parameters."""

    dialect = "postgresql"  # what the views' SQL asks of it (projections/sql.py)

    def __init__(self, raw: psycopg.Connection, pool: ConnectionPool | None = None, libpq_calls: bool = True,
                 reopen: Callable[[], psycopg.Connection] | None = None):
        """`reopen` makes a new session for a connection outside a pool (`renew`)."""
        self.raw = raw
        self.pool, self.reopen = pool, reopen
        self.pid = os.getpid()
        self.pipelined: psycopg.Pipeline | None = None  # the pipeline open on the connection, if any
        # Queries are sent by libpq's own blocking calls (`_called`); not on a session that listens,
        # whose notifications psycopg must see arrive.
        self.prepared = _prepared.setdefault(raw, Prepared()) if libpq_calls else None

    @property
    def in_transaction(self) -> bool:
        idle = self.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if idle and self.pipelined is not None:
            # libpq learns the status from the server's ReadyForQuery, which only a pipeline's sync
            # brings: a transaction begun in the pipeline reads as idle until then. A snapshot
            # opened inside another (its BEGIN pipelined) sent a second BEGIN and COMMIT.
            self.pipelined.sync()
            idle = self.raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return not idle

    @property
    def lost(self) -> bool:
        """Whether the session is gone: the server restarted or failed over, or the network failed; its
        transaction, if any, is gone with it. libpq learns it from a statement that failed so, or
        from the socket, which a server ending the session (a shutdown) closes after saying so."""
        if not self.raw.closed:
            with contextlib.suppress(psycopg.Error):
                self.raw.pgconn.consume_input()  # reads what waits, without blocking: the end of the session
        return self.raw.closed

    def renew(self) -> None:
        """Goes on in a new session, in place of a lost one. The new one is had first: when none can
        be (the server still down), the lost one is kept, to be renewed at the next try."""
        fresh = self.pool.getconn() if self.pool is not None else self.reopen()
        lost, self.raw, self.pipelined = self.raw, fresh, None
        if self.pool is not None:
            self.pool.putconn(lost)  # the pool replaces it
        else:
            lost.close()
        if self.prepared is not None:
            self.prepared = _prepared.setdefault(fresh, Prepared())

    def execute(self, sql: str, parameters: Sequence[Any] | dict = (), /) -> psycopg.Cursor | Rows:
        if self.prepared is not None and self.pipelined is None and not isinstance(parameters, dict):
            query, count, kept = numbered(sql)
            if kept:
                return self._called(query, count, parameters)
        cursor = self.raw.execute(placeholders(sql), parameters)
        if self.pipelined is None and self.prepared is not None and self.prepared.names \
                and _UNPREPARES(cursor.pgresult.command_status or b""):
            # What the statements prepared here refer to may be gone.
            self.prepared.names.clear()
            _let_prepared_go(self.raw)
        return cursor

    def _called(self, query: bytes, count: int, parameters: Sequence[Any]) -> Rows:
        """A query or a change of rows (`query`, with `count` parameters), prepared once per session
        and executed by libpq's blocking call, which lets go of the GIL while it waits, as psycopg's
        cursors do. A cursor's execute took the client 30 µs, its generators and waits the most of
        it; this takes 14 (a page of the usage list is one statement, a report two). The rest, which
        may run long (an index made), keep psycopg's cursors, which a Ctrl-C interrupts."""
        if len(parameters) != count:
            raise psycopg.ProgrammingError(f"the query has {count} placeholders but {len(parameters)} parameters were passed")
        transformer = Transformer(self.raw)
        values = transformer.dump_sequence(parameters, [PyFormat.AUTO] * count) if count else None
        try:
            result = self._sent(query, transformer, values)
        except errors.InvalidSqlStatementName:  # let go by a DEALLOCATE ALL not sent here
            self.prepared.names.clear()
            if self.in_transaction:  # the transaction failed with the statement
                raise
            result = self._sent(query, transformer, values)
        if result.status != pq.ExecStatus.TUPLES_OK:
            return Rows([], [])
        transformer.set_pgresult(result)
        return Rows(transformer.load_rows(0, result.ntuples, tuple),
                    [(result.fname(i).decode(),) for i in range(result.nfields)])

    def _sent(self, query: bytes, transformer: Transformer, values: list | None) -> pq.PGresult:
        """The result of `query` with the `values` that `transformer` dumped, prepared first if it is not yet."""
        raw, names = self.raw, self.prepared.names
        key = (query, transformer.types)
        with raw.lock:
            if (name := names.get(key)) is not None:
                names.move_to_end(key)
            else:
                name = f"_ledger_{next(self.prepared.numbers)}".encode()
                self._checked(raw.pgconn.prepare(name, query, transformer.types or None))
                names[key] = name
                if len(names) > PREPARED_MAX:
                    let_go = names.popitem(last=False)[1]
                    self._checked(raw.pgconn.exec_(b"DEALLOCATE " + let_go))
            result = raw.pgconn.exec_prepared(name, values, transformer.formats or None)
            self._checked(result)
        return result

    def _checked(self, result: pq.PGresult) -> None:
        if result.status not in _RESULTS:
            raise errors.error_from_result(result, encoding=self.raw.info.encoding)

    def execute_script(self, sql: str, /) -> None:
        """Runs statements without parameters, separated by `;`, in one round trip to the server."""
        self.raw.execute(sql)

    @contextlib.contextmanager
    def pipeline(self) -> Iterator[psycopg.Pipeline]:
        """Statements whose results are not read wait to be sent with the next one that is (or the
        block's end), in one round trip; their errors are raised there. See psycopg's pipeline mode."""
        outer = self.pipelined
        with self.raw.pipeline() as self.pipelined:
            try:
                yield self.pipelined
            finally:
                self.pipelined = outer

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor:
        cursor = self.raw.cursor()
        cursor.executemany(placeholders(sql), parameters)
        return cursor

    def close(self) -> None:
        """Gives the connection back to its pool (which rolls back what it left open), or closes it."""
        if self.pid != os.getpid():
            return  # inherited by fork: closing would end the parent's session on the shared socket
        if self.pool is not None:
            self.pool.putconn(self.raw)  # a broken one too: the pool replaces it, and counts its place free
        else:
            self.raw.close()


def session(read_only: bool = False, application_name: str = "ledger", **settings: str) -> dict:
    """psycopg's connection arguments for a ledger's session: autocommit, the lock timeout, durable
    commits (a commit answers once its log is on the server's disk), generic plans, reading only if asked.

    Generic plans: the server plans a prepared statement once, for any parameters. By default it
    may plan it again at every execution, and for the ledger's statements it did: under set_usage
    load, planning the decision's read (a dozen subqueries) again was 38% of the server's CPU. The
    statements look rows up by key, where the values do not change the best plan; the list pages
    timed the same or faster with generic plans."""
    settings = {"lock_timeout": f"{LOCK_TIMEOUT_SECONDS}s", "synchronous_commit": "on",
                "plan_cache_mode": "force_generic_plan", **settings}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    return {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": application_name,
        "options": " ".join(f"-c {name}={value}" for name, value in settings.items()),
    }


def connect(url: str, read_only: bool = False) -> Connection:
    """A connection of this process's pool for the database at `url`."""
    return Connection(*_pooled(url, read_only))


def direct(url: str, **settings: str) -> Connection:
    """A connection of its own, outside any pool: for a session that holds something (a lease), or a look."""
    reopen = functools.partial(psycopg.connect, url, **session(**settings))
    return Connection(reopen(), libpq_calls=False, reopen=reopen)


def _pooled(url: str, read_only: bool) -> tuple[psycopg.Connection, ConnectionPool]:
    key = (os.getpid(), url, read_only)  # a pool's threads do not survive fork: a child makes its own
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ConnectionPool(
                url, kwargs=session(read_only), min_size=1, max_size=POOL_SIZE, timeout=CONNECT_TIMEOUT_SECONDS,
                # A session lent is first checked (a round trip): one left idle in the pool while the
                # server restarted is gone, and would fail the first statement of whoever got it.
                reset=_reset, check=ConnectionPool.check_connection,
                name=f"ledger{'-read' if read_only else ''}", open=True,
            )
    return pool.getconn(), pool


def _let_prepared_go(raw: psycopg.Connection) -> None:
    """Lets go of the statements that `Connection.execute` prepared on a session. psycopg may have let
    them go with its own (DEALLOCATE ALL, after a ROLLBACK or a DROP it saw), or not: those the server
    still holds are asked for. psycopg's own are left to it, which does not always notice a
    DEALLOCATE ALL that it did not send."""
    held = [row[0] for row in raw.execute("SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_ledger\\_%'")]
    if held:
        raw.execute("; ".join(f"DEALLOCATE {name}" for name in held))


def _reset(raw: psycopg.Connection) -> None:
    """Undoes a session's SETs (e.g. forgo_durability) and lets go of the statements prepared on it,
    when it is given back to its pool."""
    raw.execute("RESET ALL")
    if _prepared.pop(raw, None) is not None:
        _let_prepared_go(raw)


@atexit.register
def close_pools() -> None:
    """Closes this process's pools (a forked child leaves its parent's alone): at exit, or when done
    with the databases they reach; a later connection opens a new pool."""
    with _pools_lock:
        for key, pool in list(_pools.items()):
            if key[0] == os.getpid():
                pool.close()
                del _pools[key]
