"""The PostgreSQL backend: a ledger in one database of a server, which `ledger serve` processes on
several machines can serve together. The database is made by its operator; `ledger init` makes the log in it."""

import psycopg
from psycopg import conninfo

from ledger.backends.contract import Backend, Writes
from ledger.backends.postgres import connection
from ledger.backends.postgres.driver_errors import neutral, translated
from ledger.backends.postgres.lease import Lease
from ledger.backends.postgres.store import PostgresEventStore
from ledger.errors import NotALedger

SCHEMES = ("postgresql://", "postgres://")


class PostgresBackend(Backend):
    """A ledger in the PostgreSQL database that the URL `location` names (postgresql://user@host:port/database)."""

    commits_share_flushes = True

    def exists(self) -> bool:
        try:
            connection.direct(self.location).close()
        except psycopg.OperationalError as error:
            if self._missing():
                return False
            raise neutral(error) from error
        return True

    def _missing(self) -> bool:
        """Whether the server answers and holds no database of the location's name (asks its `postgres` database)."""
        name = conninfo.conninfo_to_dict(self.location).get("dbname")
        try:
            look = connection.direct(conninfo.make_conninfo(self.location, dbname="postgres"))
        except psycopg.OperationalError:
            return False
        try:
            return look.execute("SELECT 1 FROM pg_database WHERE datname = ?", (name,)).fetchone() is None
        finally:
            look.close()

    @translated()
    def writable(self) -> bool:
        """Whether the server is a primary (a standby is read-only) and lets this user write the log, or make it."""
        look = connection.direct(self.location)
        try:
            return look.execute(
                "SELECT NOT pg_is_in_recovery() AND CASE WHEN to_regclass('events') IS NULL"
                " THEN has_schema_privilege(current_schema(), 'CREATE')"
                " ELSE has_table_privilege('events', 'INSERT') END"
            ).fetchone()[0]
        finally:
            look.close()

    @translated()
    def check_ledger(self, empty_allowed: bool) -> None:
        look = connection.direct(self.location, read_only=True)
        try:
            log, tables = look.execute(
                "SELECT to_regclass('events') IS NOT NULL,"
                " (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())"
            ).fetchone()
        finally:
            look.close()
        if log:
            return
        if tables:
            raise NotALedger("not a ledger database (no event log in it)")
        if not empty_allowed:
            raise NotALedger("not a ledger database (an empty database)")

    @translated()
    def connect(self, sync_on_commit: bool = True, read_only: bool = False,
                writes: Writes = Writes.EVERYTHING) -> connection.Connection:
        """A pooled connection; every commit is durable before it returns, so `sync_on_commit` asks
        nothing more. Appenders and folders write side by side on any connection (store.py's locks)."""
        return connection.connect(self.location, read_only)

    def event_store(self, conn: connection.Connection, writes: Writes = Writes.EVERYTHING) -> PostgresEventStore:
        return PostgresEventStore(conn)

    def projector_lease(self, store: PostgresEventStore) -> Lease:
        return Lease(self.location)

    def background_work(self, store: PostgresEventStore) -> None:
        """None: the server checkpoints its own log."""
        return None
