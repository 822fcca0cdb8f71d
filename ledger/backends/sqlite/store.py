"""The event store in SQLite: the events table, its guards, transactions under the writer locks, durability."""

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator

import sqlite_utils

from ledger.backends.contract import Writes
from ledger.backends.sql import STREAM_VERSION, SQLEventStore
from ledger.backends.sqlite.connection import VIEWS, durable_commits
from ledger.backends.sqlite.driver_errors import translated
from ledger.backends.sqlite.locks import WriterLock


# The page cache of a connection that folds the views, in KiB.
FOLDING_CACHE_KIB = 64 * 1024


class SQLiteEventStore(SQLEventStore):
    """The log as the `events` table of a SQLite database, its writers queued on a lock file beside
    it; the views' writers (folds) queue on another, as a connection that `writes` them both on both."""

    translated = staticmethod(translated)
    duplicate = sqlite3.IntegrityError
    begin_snapshot = "BEGIN DEFERRED"  # a read transaction: its snapshot is taken at its first read

    @translated()
    def __init__(self, conn: sqlite3.Connection, writes: Writes = Writes.EVERYTHING):
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.writes = writes
        files = {name: file or None for _, name, file in conn.execute("PRAGMA database_list")}
        self.database_file = database_file = files["main"]
        self.lock_path = f"{database_file}.writer-lock" if database_file else None
        self.views_lock_path = f"{database_file}.views-lock" if database_file else None
        # A database in memory has a single connection: nothing to queue for.
        self.writer_lock = WriterLock(self.lock_path) if database_file else None
        self.views_lock = WriterLock(self.views_lock_path) if files[VIEWS] else None
        # BEGIN IMMEDIATE takes the write lock of each file the connection may write: its transactions queue for each.
        self.locks = [lock for lock, kind in ((self.writer_lock, Writes.LOG), (self.views_lock, Writes.VIEWS))
                      if lock and writes in (kind, Writes.EVERYTHING)]
        self.log_path = f"{database_file}-wal" if database_file else None
        self.horizon: int | None = None  # see stream_versions

    @translated()
    def create_schema(self) -> None:
        if "events" in self.db.table_names():
            return
        self.db["events"].create(
            {
                "seq": int, "event_id": str, "stream": str, "version": int, "type": str,
                "schema_version": int, "occurred_at": str, "recorded_at": str, "actor_id": int,
                "data": str, "prev_hash": str, "hash": str,
            },
            pk="seq",
            not_null={"event_id", "stream", "version", "type", "schema_version",
                      "occurred_at", "recorded_at", "data", "prev_hash", "hash"},
        )
        self.db["events"].create_index(["event_id"], unique=True)
        self.db["events"].create_index(["stream", "version"], unique=True)
        for action in ("UPDATE", "DELETE"):
            self.conn.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                f"BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self.conn.in_transaction:
            yield
            return
        with translated(), contextlib.ExitStack() as held:
            for lock in self.locks:  # the log's first, then the views': always in that order
                held.enter_context(lock.held())
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @translated()
    def prepare_group_commits(self) -> None:
        # Each savepoint keeps a copy of every page it changes. Past 64 KiB of copies SQLite moves
        # them into a temporary file: on a million records, a file created, written 46 times and
        # deleted for every set_usage; 10% of its CPU time.
        self.conn.execute("PRAGMA temp_store=MEMORY")

    @translated()
    def prepare_folding(self) -> None:
        # SQLite's default cache (2 MiB) cannot hold the usage view's indexes at a million records:
        # a rebuild spent a quarter of its time reading back pages it had just written.
        self.conn.execute(f"PRAGMA {VIEWS}.cache_size=-{FOLDING_CACHE_KIB}")

    @translated()
    def forgo_durability(self) -> None:
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute(f"PRAGMA {VIEWS}.synchronous=OFF")

    def close(self) -> None:
        """Closes the lock files; the connection is its owner's to close."""
        for lock in (self.writer_lock, self.views_lock):
            if lock:
                lock.close()

    def sync_log(self) -> None:
        """Flushes the write-ahead log to disk: every commit so far, of any connection, is durable after it.

        The group committer commits without waiting for the disk and calls this once it has
        given up the writer lock, so that the next writer goes on while this one's flush runs.
        """
        if self.log_path is None or not durable_commits():
            return
        try:
            descriptor = os.open(self.log_path, os.O_RDONLY)
        except FileNotFoundError:  # the last connection to close copied the log into the (synced) database
            return
        try:
            os.fdatasync(descriptor)  # as SQLite's own log syncs on Linux
        finally:
            os.close(descriptor)

    @translated()
    def stream_versions(self, streams: Iterable[str]) -> dict[str, int]:
        """As the contract says, a query per 500 streams, each stream's version read off its index
        (`STREAM_VERSION`: 5 µs for three streams of a month's 1,440 versions each, where an
        aggregate over them took 460 µs, in the writer lock's hold at every append)."""
        streams = list(dict.fromkeys(streams))
        bound = "" if self.horizon is None else f" AND e.seq <= {int(self.horizon)}"
        versions = {}
        for start in range(0, len(streams), 500):  # names bound as they are: JSON would cut one at a NUL
            chunk = streams[start:start + 500]
            versions.update(self.conn.execute(
                f"WITH s(stream) AS (VALUES {', '.join('(?)' for _ in chunk)})"
                f" SELECT s.stream, coalesce(({STREAM_VERSION.format(stream='s.stream', bound=bound)}), 0) FROM s",
                chunk,
            ))
        return versions
