"""A real `ledger serve` under load, for the reliability tests and tests/bench/bench_reliability.py.

`LedgerServer` runs the server in its own process group on a loopback port, so that it can be
killed whole (gunicorn's master and its workers) with SIGKILL and started again on the same
port. `Report` and `send` make set_usage requests that can be found in the log afterwards:
each carries a unique tag as the description of its items.
"""

import collections
import fcntl
import dataclasses
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg

from ledger.backends.postgres import lease as postgres_lease
from ledger.cli import load_catalog
from ledger.database import Ledger
from ledger.log.store import EventStore

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
USAGE_RECORD = "/api/marketplace-component-usages/{}/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_ledger(db_path: str, catalog: dict) -> None:
    """Creates a ledger database holding the catalog."""
    ledger = Ledger(db_path)
    try:
        ledger.init()
        load_catalog(ledger, json.dumps(catalog))
    finally:
        ledger.close()


def stop_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stops a server started with `start_new_session=True`: SIGTERM to its whole process group (gunicorn's
    master and workers), then SIGKILL if it has not stopped within `timeout` seconds (a loaded machine can
    keep workers booting for a while), and closes the pipes the test read."""
    for number, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, number)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()


class LedgerServer:
    """`ledger serve` on 127.0.0.1 with `workers` gunicorn workers, run in `folder` (by default the
    database file's); its stderr goes to `server-<port>.log` there."""

    def __init__(self, db_path: str, workers: int = 2, env: dict | None = None, folder: str | None = None):
        self.db_path, self.workers = db_path, workers
        self.env = {**os.environ, **(env or {}), "LEDGER_DB": db_path}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = Path(folder or Path(db_path).parent)
        self.log_path = self.folder / f"server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ledger", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=self.env, cwd=self.folder, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/schema/", timeout=1) as response:
                    response.read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-3000:]}") from None
                time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the whole process group: the master and every worker die at once, mid-request."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """A graceful stop (SIGTERM), then SIGKILL if it takes too long."""
        try:
            self._signal(signal.SIGTERM, timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, number: int, timeout: float = 10) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, number)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=timeout)
        self.process = None

    def __enter__(self) -> "LedgerServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@dataclasses.dataclass(frozen=True)
class Report:
    """One set_usage request; its items' description is `tag`, so its events can be found in the log."""

    tag: str
    resource: str
    items: tuple[tuple[str, str], ...]  # (component type, amount)

    def body(self) -> bytes:
        usages = [{"type": kind, "amount": amount, "description": self.tag} for kind, amount in self.items]
        return json.dumps({"resource": self.resource, "usages": usages}).encode()


@dataclasses.dataclass(frozen=True)
class Answer:
    """What came back for a report: a status and body, or status None when the connection failed."""

    report: Report
    status: int | None
    body: bytes = b""


def call(url: str, method: str, path: str, token: str, body: bytes | None = None,
         timeout: float = 60) -> tuple[int | None, bytes]:
    """One request on a connection of its own: (status, body), or (None, b"") when the connection failed."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"Authorization": f"Token {token}"} | ({"Content-Type": "application/json"} if body is not None else {})
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None, b""
    finally:
        connection.close()


def send(url: str, token: str, report: Report, timeout: float = 60) -> Answer:
    status, body = call(url, "POST", SET_USAGE, token, report.body(), timeout)
    return Answer(report, status, body)


def read_usage(url: str, token: str, record_uuid: str, timeout: float = 60) -> tuple[int | None, str | None]:
    """Retrieves a usage record: (status, its usage when 200); status None when the connection failed."""
    status, body = call(url, "GET", USAGE_RECORD.format(record_uuid), token, timeout=timeout)
    return status, json.loads(body)["usage"] if status == 200 else None


# Who holds the projector's lease of a PostgreSQL ledger: the holder names itself in its session.
POSTGRES_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def lease_holder(db: str) -> int | None:
    """The pid of the projector's holder: on SQLite the one its lease file names (the last holder,
    once it let go); on PostgreSQL the one whose session holds the lease now."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db, autocommit=True) as conn:
            row = conn.execute(POSTGRES_HOLDER, (postgres_lease.LEASE_LOCK,)).fetchone()
        return int(row[0].split()[3]) if row else None  # "ledger projector pid <pid> on <host>"
    try:
        return int(Path(f"{db}.projector-lease").read_text())
    except (FileNotFoundError, ValueError):
        return None


def lease_taken(db: str) -> bool:
    """Whether somebody holds the projector's lease now (a test's own attempt would fail)."""
    if db.startswith("postgresql://"):
        with psycopg.connect(db, autocommit=True) as conn:
            return conn.execute(POSTGRES_HOLDER, (postgres_lease.LEASE_LOCK,)).fetchone() is not None
    with open(f"{db}.projector-lease") as lease:
        try:
            fcntl.flock(lease, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lease, fcntl.LOCK_UN)
        return False


def parent_of(pid: int) -> int | None:
    """The parent pid of a live process (a gunicorn worker's is its master); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or going while read
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (name) state": the name may hold spaces


def children_of(pid: int) -> set[int]:
    """The live child processes of `pid`: a gunicorn master's workers."""
    return {int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit() and parent_of(int(entry.name)) == pid}


def logged_tags(store: EventStore) -> collections.Counter:
    """How many UsageReported events each tag has in the log."""
    return collections.Counter(event.data["description"] for event in store.read() if event.type == "UsageReported")


@dataclasses.dataclass
class Tally:
    """Answers held against the log: every acknowledged report must be there whole, and nothing half."""

    sent: int = 0
    acknowledged: int = 0  # 201
    refused: int = 0  # any other status
    unanswered: int = 0  # no status: the server died (or the connection broke) first
    missing: list[str] = dataclasses.field(default_factory=list)  # acknowledged, yet not (wholly) in the log
    partial: list[str] = dataclasses.field(default_factory=list)  # some but not all of a report's events
    duplicated: list[str] = dataclasses.field(default_factory=list)  # more events than the report has items
    refused_but_logged: list[str] = dataclasses.field(default_factory=list)
    unanswered_but_logged: int = 0  # committed, but the answer never arrived: allowed

    @classmethod
    def of(cls, answers: list[Answer], tags: collections.Counter) -> "Tally":
        tally = cls(sent=len(answers))
        for answer in answers:
            tag, expected, found = answer.report.tag, len(answer.report.items), tags.get(answer.report.tag, 0)
            if found > expected:
                tally.duplicated.append(tag)
            elif 0 < found < expected:
                tally.partial.append(tag)
            if answer.status == 201:
                tally.acknowledged += 1
                if found < expected:
                    tally.missing.append(tag)
            elif answer.status is None:
                tally.unanswered += 1
                tally.unanswered_but_logged += found == expected
            else:
                tally.refused += 1
                if found:
                    tally.refused_but_logged.append(tag)
        return tally

    @classmethod
    def of_writers(cls, db_path: str, writers) -> "Tally":
        """The answers of writer threads (each with its `answers`) held against the log of `db_path`."""
        ledger = Ledger(db_path)
        try:
            return cls.of([answer for writer in writers for answer in writer.answers], logged_tags(ledger.store))
        finally:
            ledger.close()

    @property
    def sound(self) -> bool:
        return not (self.missing or self.partial or self.duplicated or self.refused_but_logged)
