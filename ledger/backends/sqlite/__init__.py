"""The SQLite backend: a ledger in one database file, with its lock files beside it."""

import os
import sqlite3

from ledger.backends.contract import Backend
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
    def connect(self, sync_on_commit: bool = True, read_only: bool = False) -> sqlite3.Connection:
        return connection.connect(self.location, sync_on_commit, read_only)

    def event_store(self, conn: sqlite3.Connection) -> SQLiteEventStore:
        return SQLiteEventStore(conn)

    def projector_lease(self, store: SQLiteEventStore) -> Lease | None:
        return Lease(store.database_file) if store.database_file else None

    @translated()
    def background_work(self, store: SQLiteEventStore) -> checkpointer.Checkpointer | None:
        """A thread checkpointing the write-ahead log, instead of the commits of the store's connection."""
        if not store.lock_path:
            return None
        store.conn.execute(f"PRAGMA wal_autocheckpoint={checkpointer.WRITER_CHECKPOINT_PAGES}")
        return checkpointer.Checkpointer(self.location, store.lock_path)
