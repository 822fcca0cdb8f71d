"""Hearing of the writes other processes make to a SQLite database's write-ahead log.

Nothing in SQLite tells one process of another's commit. On Linux, inotify does: every commit
writes frames to the database's `-wal` file, and a watch on its folder (the log is deleted and
made again as connections come and go) hears each write of any process at once. Elsewhere
there is no such watch, and `LogWatch.open` gives None: the caller looks at the log itself.
"""

import ctypes
import ctypes.util
import errno
import math
import os
import select
import struct
import time

IN_MODIFY, IN_CREATE, IN_Q_OVERFLOW = 0x2, 0x100, 0x4000
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name, NUL-padded


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1, libc.inotify_add_watch  # noqa: B018 - present on Linux only
    except (OSError, AttributeError):
        return None
    return libc


LIBC = _libc()


class LogWatch:
    """An inotify watch on the folder of one database file, filtered to writes of its write-ahead log."""

    def __init__(self, descriptor: int, log_name: bytes):
        self.descriptor, self.log_name = descriptor, log_name
        self.poller = select.poll()
        self.poller.register(descriptor, select.POLLIN)

    @classmethod
    def open(cls, database_file: str) -> "LogWatch | None":
        """A watch on the database's log; None where the system has no inotify (or refuses one more)."""
        if LIBC is None:
            return None
        descriptor = LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if descriptor < 0:
            return None
        folder = os.path.dirname(os.path.abspath(database_file)).encode()
        if LIBC.inotify_add_watch(descriptor, folder, IN_MODIFY | IN_CREATE) < 0:
            os.close(descriptor)
            return None
        return cls(descriptor, f"{os.path.basename(database_file)}-wal".encode())

    def wait(self, timeout: float) -> bool:
        """Waits up to `timeout` seconds for a write to the log; True when one was heard (those heard
        since the last wait included), False when the time ran out."""
        deadline = time.monotonic() + timeout
        while not self._heard():  # a write to another file of the folder waits on
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.poller.poll(math.ceil(remaining * 1000)):
                return False
        return True

    def _heard(self) -> bool:
        """Reads every queued event; True when one was a write to the log (or events were lost)."""
        heard = False
        while True:
            try:
                buffer = os.read(self.descriptor, 65536)
            except OSError as error:
                if error.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    return heard
                raise
            offset = 0
            while offset < len(buffer):
                _, mask, _, length = EVENT_HEADER.unpack_from(buffer, offset)
                name = buffer[offset + EVENT_HEADER.size:offset + EVENT_HEADER.size + length].rstrip(b"\0")
                heard = heard or name == self.log_name or bool(mask & IN_Q_OVERFLOW)
                offset += EVENT_HEADER.size + length

    def close(self) -> None:
        os.close(self.descriptor)
