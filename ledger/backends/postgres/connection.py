"""Connections to a PostgreSQL ledger: psycopg's, in autocommit mode, pooled per process, speaking the
write side's and the views' `?` parameters."""

import atexit
import contextlib
import functools
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

# As long as a SQLite writer waits for the writer lock before giving up.
LOCK_TIMEOUT_SECONDS = 60
# Connections a process keeps open at most per database and mode; a Ledger holds one while it is open.
POOL_SIZE = 64
CONNECT_TIMEOUT_SECONDS = 10

_pools: dict[tuple[int, str, bool], ConnectionPool] = {}
_pools_lock = threading.Lock()


@functools.lru_cache(maxsize=4096)
def placeholders(sql: str) -> str:
    """`sql` with each `?` outside quotes as psycopg's `%s`, and each literal `%` doubled."""
    translated, quote = [], None
    for char in sql:
        if quote:
            quote = None if char == quote else quote  # a doubled quote closes and reopens: still inside
        elif char in "'\"":
            quote = char
        elif char == "?":
            translated.append("%s")
            continue
        translated.append("%%" if char == "%" else char)
    return "".join(translated)


class Connection:
    """A psycopg connection as the write side and the views use it: sqlite3's way (execute returning a
    cursor, `in_transaction`), transactions opened explicitly with BEGIN, `?` parameters."""

    dialect = "postgresql"  # what the views' SQL asks of it (projections/sql.py)

    def __init__(self, raw: psycopg.Connection, pool: ConnectionPool | None = None):
        self.raw = raw
        self.pool = pool
        self.pid = os.getpid()
        self.pipelined: psycopg.Pipeline | None = None  # the pipeline open on the connection, if any

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

    def execute(self, sql: str, parameters: Sequence[Any] | dict = (), /) -> psycopg.Cursor:
        return self.raw.execute(placeholders(sql), parameters)

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
    return Connection(psycopg.connect(url, **session(**settings)))


def _pooled(url: str, read_only: bool) -> tuple[psycopg.Connection, ConnectionPool]:
    key = (os.getpid(), url, read_only)  # a pool's threads do not survive fork: a child makes its own
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = ConnectionPool(
                url, kwargs=session(read_only), min_size=1, max_size=POOL_SIZE, timeout=CONNECT_TIMEOUT_SECONDS,
                reset=lambda raw: raw.execute("RESET ALL"),  # undoes a session's SETs, e.g. forgo_durability
                name=f"ledger{'-read' if read_only else ''}", open=True,
            )
    return pool.getconn(), pool


@atexit.register
def close_pools() -> None:
    """Closes this process's pools (a forked child leaves its parent's alone): at exit, or when done
    with the databases they reach; a later connection opens a new pool."""
    with _pools_lock:
        for key, pool in list(_pools.items()):
            if key[0] == os.getpid():
                pool.close()
                del _pools[key]
