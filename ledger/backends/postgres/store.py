"""The event store in PostgreSQL: the events table, its guards, transactions under the append lock.

Appends are serialised by a transaction-scoped advisory lock, taken first in every write
transaction: seq is the head + 1 under it, and the lock is let go only once the transaction is
visible, so seq is gapless in commit order and no reader ever sees seq N+1 before N.
"""

import contextlib
from collections.abc import Iterable, Iterator

from psycopg import errors

from ledger.backends.postgres.connection import Connection
from ledger.backends.postgres.driver_errors import translated
from ledger.backends.postgres.lease import APPENDED_CHANNEL
from ledger.backends.sql import SQLEventStore
from ledger.log.hashing import GENESIS_HASH

# The advisory lock key every write transaction of a database queues on (the SQLite writer lock's role).
APPEND_LOCK = 0x6C6564676572  # "ledger"
# Folders queue on a lock of their own: the views are written by folds alone, so appenders go on
# while one runs. Taken after APPEND_LOCK when both are (a decision under the lock folds first).
FOLD_LOCK = 0x766965777321  # "views!"

# Streams compare byte by byte (COLLATE "C"), as in SQLite: prefix ranges and "greatest stream" agree.
SCHEMA = (
    """CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        stream TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        occurred_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        actor_id BIGINT,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (stream, version)
    )""",
    """CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the event log is append-only' USING ERRCODE = 'integrity_constraint_violation';
        END
    $$""",
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events EXECUTE FUNCTION events_append_only()",
)


class PostgresEventStore(SQLEventStore):
    """The log as the `events` table of a PostgreSQL database, its writers queued on an advisory lock."""

    translated = staticmethod(translated)
    duplicate = errors.UniqueViolation
    begin_snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

    def __init__(self, conn: Connection):
        self.conn = conn
        self.horizon: int | None = None  # see stream_versions

    def create_schema(self) -> None:
        """Creates the log unless it exists; nodes starting together create it once, in turn under the append lock."""
        with self.transaction():
            if self.conn.execute("SELECT to_regclass('events')").fetchone()[0] is not None:
                return
            for statement in SCHEMA:
                self.conn.execute(statement)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._under(APPEND_LOCK, joined_takes_it=False)

    def fold_transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._under(FOLD_LOCK, joined_takes_it=True)

    @contextlib.contextmanager
    def _under(self, lock: int, joined_takes_it: bool) -> Iterator[None]:
        """A transaction that first takes the advisory lock `lock`, held until it ends. Inside one
        already, it joins it, taking the lock there too if `joined_takes_it`."""
        with translated():
            if self.conn.in_transaction:
                if joined_takes_it:
                    self.conn.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
                yield
                return
            self.conn.execute_script(f"BEGIN; SELECT pg_advisory_xact_lock({int(lock)})")  # one round trip
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def insert_rows(self, rows: list[tuple]) -> None:
        """As the contract says; the commit then notifies the projector's holder (postgres/lease.py).
        A notification travels with the rows, and is dropped with them if they are rolled back.
        It is sent first: in a pipeline, a statement sent after the rows may raise their refusal,
        which must reach the caller as the rows' own (a conflict)."""
        with translated():
            self.conn.execute(f"NOTIFY {APPENDED_CHANNEL}")
        super().insert_rows(rows)

    def batched(self) -> contextlib.AbstractContextManager:
        return self.conn.pipeline()

    def prepare_group_commits(self) -> None:
        """Nothing to ready: a savepoint costs the server no file of its own."""

    @translated()
    def forgo_durability(self) -> None:
        self.conn.execute("SET synchronous_commit = off")

    def close(self) -> None:
        """Holds nothing of its own: the append lock lasts a transaction, and the connection is its owner's."""

    def sync_log(self) -> None:
        """Nothing to flush: every commit waited for the server's log to reach its disk (synchronous_commit)."""

    @translated()
    def tip(self, streams: Iterable[str]) -> tuple[int, str, dict[str, int]]:
        """As the contract says, in one query: the head's row (no stream), and a row per stream that has events."""
        streams = list(dict.fromkeys(streams))
        versions = dict.fromkeys(streams, 0)
        rows = self.conn.execute(
            "SELECT NULL, seq, hash FROM (SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1) head"
            " UNION ALL SELECT stream, MAX(version), NULL FROM events WHERE stream = ANY(?) GROUP BY stream",
            (streams,),
        ).fetchall()
        seq, hash_ = next(((seq, hash_) for stream, seq, hash_ in rows if stream is None), (0, GENESIS_HASH))
        versions.update((stream, version) for stream, version, _ in rows if stream is not None)
        return seq, hash_, versions

    @translated()
    def stream_versions(self, streams: Iterable[str]) -> dict[str, int]:
        """As the contract says, in one query."""
        streams = list(dict.fromkeys(streams))
        versions = dict.fromkeys(streams, 0)
        bound = "" if self.horizon is None else f" AND seq <= {int(self.horizon)}"
        versions.update(self.conn.execute(
            f"SELECT stream, MAX(version) FROM events WHERE stream = ANY(?){bound} GROUP BY stream", (streams,)
        ))
        return versions
