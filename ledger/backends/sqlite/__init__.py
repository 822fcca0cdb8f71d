"""The SQLite backend: a ledger in a database file and its views' file beside it, with their lock files."""

import os
import sqlite3

from ledger.backends.contract import Backend, Writes
from ledger.backends.sqlite import checkpointer, connection
from ledger.backends.sqlite.driver_errors import translated
from ledger.backends.sqlite.locks import Lease
from ledger.backends.sqlite.store import SQLiteEventStore
from ledger.errors import NotALedger


class SQLiteBackend(Backend):
    """A ledger in the SQLite file at `location` (":memory:" for one that only its connection sees)."""

    def exists(self) -> bool:
        return os.path.exists(self.location)

    def writable(self) -> bool:
        return connection.writable(self.location)

    def check_ledger(self, empty_allowed: bool) -> None:
        if os.path.isdir(self.location):
            raise NotALedger("not a ledger database (a directory)")
        if os.path.getsize(self.location) == 0:
            if empty_allowed:
                return
            raise NotALedger("not a ledger database (an empty file)")
        try:
            conn = connection.connect(self.location, read_only=True)
            try:
                found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
            finally:
                conn.close()
        except sqlite3.DatabaseError as error:
            raise NotALedger(f"not a ledger database ({error})") from None
        if found is None:
            raise NotALedger("not a ledger database (no event log in it)")

    @translated()
    def connect(self, sync_on_commit: bool = True, read_only: bool = False,
                writes: Writes = Writes.EVERYTHING) -> sqlite3.Connection:
        return connection.connect(self.location, sync_on_commit, read_only, writes)

    def event_store(self, conn: sqlite3.Connection, writes: Writes = Writes.EVERYTHING) -> SQLiteEventStore:
        return SQLiteEventStore(conn, writes)

    def projector_lease(self, store: SQLiteEventStore) -> Lease | None:
        return Lease(store.database_file) if store.database_file else None

    @translated()
    def background_work(self, store: SQLiteEventStore) -> checkpointer.Checkpointer | None:
        """A thread checkpointing the write-ahead log the store's connection writes (the views' for
        one that writes only them), instead of that connection's commits."""
        if not store.database_file:
            return None
        store.conn.execute(f"PRAGMA wal_autocheckpoint={checkpointer.WRITER_CHECKPOINT_PAGES}")
        if store.writes is Writes.VIEWS:
            return checkpointer.Checkpointer(self.location, store.views_lock_path, connection.VIEWS, Writes.VIEWS)
        return checkpointer.Checkpointer(self.location, store.lock_path)
