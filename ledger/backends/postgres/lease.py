"""The projector's lease on a PostgreSQL ledger: a session-level advisory lock on a connection of its own.

The server lets go of a session's advisory locks when the session ends: when its holder lets go,
exits, is killed (kill -9 included), or loses its connection. Keepalives and a periodic check of
the client make the server notice a holder whose machine vanished within about half a minute.

For operators, the holder names itself in its session's application_name, "ledger projector pid
<pid> on <host>". Who holds the lease of the database one is connected to:

    SELECT a.application_name, a.client_addr, a.backend_start
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = 1886547818
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
"""

import contextlib
import os
import socket
import threading

import psycopg

from ledger.backends.postgres import connection
from ledger.backends.postgres.driver_errors import translated

# The lease's advisory lock key ("proj"); apart from the append lock's, so that it never blocks a writer.
LEASE_LOCK = 0x70726F6A
# The server's checks that the holder's connection is alive (seconds), so that a vanished holder frees it.
LIVENESS = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "3",
            "client_connection_check_interval": "5s"}
# Every transaction that appends notifies this channel at its commit (PostgresEventStore.insert_rows);
# the holder's session listens, so that it folds at once whichever node appended.
APPENDED_CHANNEL = "ledger_appended"
# The holder looks at the log itself this often when nothing notified it: a node of an earlier
# release appends without notifying. Also how long a stopping holder may wait to notice.
LOOK_SECONDS = 0.2


class Lease:
    """The projector's lease of the database at `url`: at most one holder folds its views at a time."""

    def __init__(self, url: str):
        self.url = url
        self.conn: connection.Connection | None = None
        self.pid: int | None = None
        self.held = False

    @translated()
    def acquire(self) -> bool:
        """Takes the lease if nobody holds it; True when this object holds it (already, or now).

        A holder asks the server each time whether its session lives: one whose session ended lost the lease.
        """
        if self.pid != os.getpid():  # inherited by fork: the parent's session is the parent's
            self.conn, self.pid, self.held = None, os.getpid(), False
        if self.held and self._session_lives():
            return True
        try:
            return self._take()
        except psycopg.OperationalError:
            if self.conn is None or not self.conn.lost:
                raise
            self._session_ended()  # e.g. the server restarted since the last try: once more, in a new session
            return self._take()

    def _take(self) -> bool:
        if self.conn is None:
            holder = f"ledger projector pid {os.getpid()} on {socket.gethostname()}"
            self.conn = connection.direct(self.url, application_name=holder, **LIVENESS)
        self.held = self.conn.execute("SELECT pg_try_advisory_lock(?)", (LEASE_LOCK,)).fetchone()[0]
        if self.held:
            self.conn.execute(f"LISTEN {APPENDED_CHANNEL}")
        return self.held

    @translated()
    def await_appends(self, appended: threading.Event) -> bool:
        """Woken by the notification of any node's append, this process's included; looks every LOOK_SECONDS."""
        try:
            woken = any(True for _ in self.conn.raw.notifies(timeout=LOOK_SECONDS, stop_after=1))
            if woken:  # those queued meanwhile: the same fold takes their events
                for _ in self.conn.raw.notifies(timeout=0):
                    pass
        except psycopg.OperationalError:
            self._session_ended()
            raise
        woken = woken or appended.is_set()
        appended.clear()
        return woken

    def _session_lives(self) -> bool:
        try:
            self.conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            self._session_ended()
            return False

    def _session_ended(self) -> None:
        """The session is gone, and the lease with it."""
        self.conn.close()
        self.conn, self.held = None, False

    def release(self) -> None:
        """Lets the lease go, then ends its session: unlocked first, so that it is free when this returns."""
        if self.conn is not None and self.pid == os.getpid():
            with contextlib.suppress(psycopg.Error):  # a session that ended has let go already
                if self.held:
                    self.conn.execute("SELECT pg_advisory_unlock(?)", (LEASE_LOCK,))
            self.conn.close()
        self.conn = self.pid = None
        self.held = False
