"""The event store in SQLite: the events table, its guards, and the queries over it."""

import contextlib
import os
import sqlite3
from collections.abc import Iterable, Iterator

import sqlite_utils

from ledger.backends.sqlite.connection import durable_commits
from ledger.backends.sqlite.driver_errors import translated
from ledger.backends.sqlite.locks import WriterLock
from ledger.errors import StreamConflict
from ledger.log.hashing import GENESIS_HASH
from ledger.log.records import COLUMNS, StoredEvent, stored_event
from ledger.log.store import READ_BATCH, EventStore

SELECTED = ", ".join(COLUMNS)


# The page cache of a connection that folds the views, in KiB.
FOLDING_CACHE_KIB = 64 * 1024


class SQLiteEventStore(EventStore):
    """The log as the `events` table of a SQLite database, its writers queued on a lock file beside it."""

    @translated()
    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        database_file = conn.execute("PRAGMA database_list").fetchone()[2]
        self.lock_path = f"{database_file}.writer-lock" if database_file else None
        self.lease_path = f"{database_file}.projector-lease" if database_file else None
        # An in-memory database has a single connection: nothing to queue for.
        self.writer_lock = WriterLock(self.lock_path) if database_file else None
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
        with translated(), self.writer_lock.held() if self.writer_lock else contextlib.nullcontext():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        with translated():
            self.conn.execute("SAVEPOINT part")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK TO part")
                raise
            finally:
                self.conn.execute("RELEASE part")

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
        self.conn.execute(f"PRAGMA cache_size=-{FOLDING_CACHE_KIB}")

    @translated()
    def forgo_durability(self) -> None:
        self.conn.execute("PRAGMA synchronous=OFF")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        if self.conn.in_transaction:
            yield
            return
        with translated():
            self.conn.execute("BEGIN DEFERRED")
            try:
                yield
            finally:
                self.conn.execute("COMMIT")

    def close(self) -> None:
        """Closes the writer lock's file; the connection is its owner's to close."""
        if self.writer_lock:
            self.writer_lock.close()

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
        """As the contract says, a query per 500 streams."""
        streams = list(dict.fromkeys(streams))
        versions = dict.fromkeys(streams, 0)
        bound = "" if self.horizon is None else f" AND seq <= {int(self.horizon)}"
        for start in range(0, len(streams), 500):
            chunk = streams[start:start + 500]
            versions.update(self.conn.execute(
                f"SELECT stream, MAX(version) FROM events WHERE stream IN ({', '.join('?' * len(chunk))}){bound}"
                " GROUP BY stream",
                chunk,
            ))
        return versions

    @translated()
    def last_event(self, stream: str) -> StoredEvent | None:
        row = self.conn.execute(
            f"SELECT {SELECTED} FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1", (stream,)
        ).fetchone()
        return stored_event(row) if row else None

    @translated()
    def last_of_greatest_stream(self, prefix: str) -> StoredEvent | None:
        row = self.conn.execute(
            f"SELECT {SELECTED} FROM events WHERE stream >= ? AND stream < ? ORDER BY stream DESC, version DESC LIMIT 1",
            (prefix, prefix + "\uffff"),
        ).fetchone()
        return stored_event(row) if row else None

    @translated()
    def head(self) -> tuple[int, str]:
        row = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    @translated()
    def event_hash(self, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    @translated()
    def insert_rows(self, rows: list[tuple]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        try:
            self.conn.executemany(f"INSERT INTO events ({SELECTED}) VALUES ({placeholders})", rows)
        except sqlite3.IntegrityError as error:
            raise StreamConflict(str(error)) from error

    def read_rows(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[tuple]:
        position = after
        bound = "" if until is None else f" AND seq <= {int(until)}"
        while True:
            with translated():
                rows = self.conn.execute(
                    f"SELECT {SELECTED} FROM events WHERE seq > ?{bound} ORDER BY seq LIMIT ?", (position, batch)
                ).fetchall()
            if not rows:
                return
            yield from rows
            position = rows[-1][0]

    def read_stream(self, stream: str) -> Iterator[StoredEvent]:
        with translated():
            yield from map(stored_event, self.conn.execute(
                f"SELECT {SELECTED} FROM events WHERE stream = ? ORDER BY version", (stream,)
            ))

    def read_streams(self, prefix: str) -> Iterator[StoredEvent]:
        with translated():
            yield from map(stored_event, self.conn.execute(
                f"SELECT {SELECTED} FROM events WHERE stream >= ? AND stream < ? ORDER BY seq", (prefix, prefix + "\uffff")
            ))

    @translated()
    def seq_at(self, recorded_at: str) -> int:
        row = self.conn.execute("SELECT MIN(seq) FROM events WHERE recorded_at > ?", (recorded_at,)).fetchone()
        return self.head()[0] if row[0] is None else row[0] - 1
