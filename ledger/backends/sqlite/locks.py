"""The OS locks beside a SQLite ledger's file: the writers' queue, and the projector's lease."""

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator

from ledger.backends.sqlite import connection
from ledger.backends.sqlite.watch import LogWatch
from ledger.errors import DatabaseLocked

LOCK_POLL_SECONDS = 0.0005
# Where nothing tells the projector's holder of another process's append (no watch on the log,
# watch.py), it looks at the log this often.
LOOK_SECONDS = 0.002
# Where a watch tells it, it still looks this often on its own: an idle holder then reads the log a
# few times a second, not 500 (3% of a core, measured on an idle `ledger serve`).
WATCHED_LOOK_SECONDS = 0.2


class WriterLock:
    """The OS lock beside a database file that its writers queue on.

    SQLite's own busy handler polls in growing sleeps (up to 100 ms), so under contention the
    database stands idle while writers sleep; polling the flock every LOCK_POLL_SECONDS hands it
    over almost at once. Like SQLite's busy timeout, waiting gives up after BUSY_TIMEOUT_SECONDS.
    The OS drops the lock of a process that dies.

    The lock file stays open from one turn to the next instead of being opened for every write.
    A lock belongs to an open file, so a process that inherited it by fork opens its own.
    """

    def __init__(self, path: str):
        self.path = path
        self.descriptor: int | None = None
        self.pid: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.pid != os.getpid():
            self.close()
            self.descriptor, self.pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        deadline = time.monotonic() + connection.BUSY_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseLocked("database is locked: no writer lock within the busy timeout") from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # an inherited copy: closing it leaves the parent's lock alone
        self.descriptor = self.pid = None


class Lease:
    """The projector's lease beside a database file: at most one holder folds its views at a time.

    An OS lock taken without waiting. The OS drops it when its holder dies (kill -9 included),
    so that another process takes over; the holder writes its pid into the file, for operators.
    The holder watches the database's log for other processes' appends (watch.py), where it can.
    """

    def __init__(self, database_file: str):
        self.path, self.database_file = f"{database_file}.projector-lease", database_file
        self.descriptor: int | None = None
        self.pid: int | None = None
        self.held = False
        self.watch: LogWatch | None = None

    def acquire(self) -> bool:
        """Takes the lease if nobody holds it; True when this object holds it (already, or now)."""
        if self.pid != os.getpid():
            self._close()  # inherited by fork: closing its files leaves the parent's lease and watch alone
            self.descriptor, self.pid, self.held = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid(), False
        if self.held:
            return True
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.descriptor, 0)
        os.pwrite(self.descriptor, f"{os.getpid()}\n".encode(), 0)
        self.held = True
        self.watch = LogWatch.open(self.database_file)  # before the holder first looks: no append goes unheard
        return True

    def await_appends(self, appended: threading.Event) -> bool:
        """Woken by this process's appends. Other processes' are heard by the watch on the log (which
        hears this process's too), and without one found by looking every LOOK_SECONDS."""
        if self.watch is None:
            woken = appended.wait(LOOK_SECONDS)
        else:
            self.watch.wait(WATCHED_LOOK_SECONDS)
            woken = appended.is_set()  # heard from another process (or a fold's own writes): the holder looks
        appended.clear()
        return woken

    def release(self) -> None:
        if self.descriptor is not None and self.pid == os.getpid() and self.held:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)
        self._close()
        self.descriptor = self.pid = None
        self.held = False

    def _close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
        if self.watch is not None:
            self.watch.close()
            self.watch = None
