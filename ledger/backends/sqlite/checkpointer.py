"""Checkpoints the write-ahead log in the background, so that no writer waits for them.

Left to itself, SQLite checkpoints after the commit that takes the log past 1,000 pages,
inside that writer's turn: it copies the pages into the database file and syncs the file.
With a large database most of those pages land far apart, and the sync took half of every
write's time (measured on one million records). Here a thread of the writing process does it
instead, while writers go on appending.

A log only starts again from its beginning when a writer finds every page of it copied, which
never happens while writers follow each other closely. So once the log has grown past
RESTART_PAGES, the thread copies the last few pages while holding its writers' lock (the log's
writer lock, or the views' lock for the views' own log), and the next writer starts the log over.
"""

import logging
import sqlite3
import threading

from ledger.backends.contract import Writes
from ledger.backends.sqlite.connection import connect
from ledger.backends.sqlite.locks import WriterLock

INTERVAL_SECONDS = 0.1
RESTART_PAGES = 4000
# Writers checkpoint for themselves only if the thread falls this far behind.
WRITER_CHECKPOINT_PAGES = 4 * RESTART_PAGES


class Checkpointer:
    """A daemon thread copying committed pages of one database's log into the database file."""

    def __init__(self, path: str, lock_path: str, schema: str = "main", writes: Writes = Writes.LOG):
        """Checkpoints the log of the attached database `schema` (the log's own, or the views'), whose
        writers queue on the lock at `lock_path`, over a connection that `writes` that database."""
        self.conn, self.schema = connect(path, writes=writes), schema
        self.writer_lock = WriterLock(lock_path)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(INTERVAL_SECONDS):
            try:
                self.checkpoint()
            except sqlite3.Error:
                logging.getLogger(__name__).exception("background checkpoint failed; retrying")
        self.writer_lock.close()
        self.conn.close()

    def checkpoint(self) -> None:
        """Copies what it can without blocking anyone; restarts a log grown past RESTART_PAGES."""
        _, log_pages, _ = self.conn.execute(f"PRAGMA {self.schema}.wal_checkpoint(PASSIVE)").fetchone()
        if log_pages >= RESTART_PAGES:
            with self.writer_lock.held():
                self.conn.execute(f"PRAGMA {self.schema}.wal_checkpoint(PASSIVE)")

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
