"""Several `ledger serve` processes over one database (a SQLite file, a PostgreSQL database), and the
death of the projector's holder, and of a whole node.

Writes only append; the views are folded by whichever worker process holds the projector lease,
and every request first waits until the views reach the log's head. So a write acknowledged by
one server must be read back at once through another, and when the holder is killed with
SIGKILL mid-load another process must take the lease over, with nothing acknowledged lost.
"""

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_list as list_usages,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_retrieve as retrieve_usage,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_set_usage as set_usage,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_set_user_usage as set_user_usage,
)
from waldur_api_client.api.marketplace_component_user_usages import (
    marketplace_component_user_usages_list as list_user_usages,
)
from waldur_api_client.api.marketplace_component_user_usages import (
    marketplace_component_user_usages_retrieve as retrieve_user_usage,
)
from waldur_api_client.models import (
    ComponentUsageCreateRequest,
    ComponentUsageItemRequest,
    ComponentUserUsageCreateRequest,
)

from ledger.log import events

from .conftest import new_database
from .serving import (
    Answer,
    LedgerServer,
    Report,
    Tally,
    children_of,
    lease_holder,
    lease_taken,
    new_ledger,
    parent_of,
    read_usage,
    send,
)
from .world import OFFERING_USER, RESOURCE, catalog_document, token

NOW = "2026-03-15T12:00:00Z"
MARCH = dt.date(2026, 3, 1)
ROUNDS = 100
WRITERS, ACKNOWLEDGED_BEFORE_KILL, ACKNOWLEDGED_AFTER_KILL = 4, 100, 150
# A resource of its own for each writer thread, so that the value it last wrote is the one to read back.
WRITER_RESOURCES = [f"0d{n + 16:030x}" for n in range(WRITERS)]


def record_uuid(resource: str, component_type: str) -> str:
    return events.usage_record_uuid(resource, component_type, MARCH.isoformat())


def catalog_with_writer_resources() -> dict:
    """The test catalog, plus one resource like RESOURCE for each writer thread."""
    document = catalog_document()
    template = next(resource for resource in document["resources"] if resource["uuid"] == RESOURCE)
    for n, uuid in enumerate(WRITER_RESOURCES):
        plan = [{**template["plan_periods"][0], "uuid": f"0e{n + 16:030x}"}]
        document["resources"].append({**template, "uuid": uuid, "name": f"writer-{n}", "plan_periods": plan})
    return document


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def two_servers(request, tmp_path_factory):
    """(database, two `ledger serve` of 2 workers each over it): a SQLite file, or a PostgreSQL database."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_NOW", NOW)
        folder = tmp_path_factory.mktemp("nodes")
        db_path = new_database(request, request.param, folder)
        new_ledger(db_path, catalog_with_writer_resources())
        with LedgerServer(db_path, workers=2, folder=folder) as first, \
                LedgerServer(db_path, workers=2, folder=folder) as second:
            yield db_path, (first, second)


def official_client(server: LedgerServer) -> AuthenticatedClient:
    # A connection per request: a kept-alive one would stay with one worker of the server.
    return AuthenticatedClient(base_url=server.url, token=token("staff"), headers={"Connection": "close"})


def report(client: AuthenticatedClient, component_type: str, amount: str) -> int:
    body = ComponentUsageCreateRequest(
        resource=UUID(RESOURCE), usages=[ComponentUsageItemRequest(type_=component_type, amount=amount)]
    )
    return set_usage.sync_detailed(client=client, body=body).status_code


def test_a_usage_written_through_one_server_is_read_back_through_the_other_every_time(two_servers):
    _, servers = two_servers
    record, stale = record_uuid(RESOURCE, "cpu"), []
    with official_client(servers[0]) as first, official_client(servers[1]) as second:
        for n in range(ROUNDS):
            writer, reader = (first, second) if n % 2 == 0 else (second, first)
            amount = f"{n}.25"
            assert report(writer, "cpu", amount) == 201
            listed = list_usages.sync(client=reader, resource_uuid=UUID(RESOURCE), type_="cpu", billing_period=MARCH)
            retrieved = retrieve_usage.sync(uuid=UUID(record), client=reader)
            if [entry.usage for entry in listed] != [amount] or retrieved.usage != amount:
                stale.append((n, amount, [entry.usage for entry in listed], retrieved.usage))
    assert stale == []


def test_a_user_usage_written_through_one_server_is_read_back_through_the_other_every_time(two_servers):
    _, servers = two_servers
    record, stale = UUID(record_uuid(RESOURCE, "ram")), []
    with official_client(servers[0]) as first, official_client(servers[1]) as second:
        assert report(first, "ram", "8") == 201
        for n in range(ROUNDS):
            writer, reader = (first, second) if n % 2 == 0 else (second, first)
            amount = f"{n}.50"
            body = ComponentUserUsageCreateRequest(
                username="alice", usage=amount, user=f"http://x/api/marketplace-offering-users/{OFFERING_USER}/"
            )
            assert set_user_usage.sync_detailed(uuid=record, client=writer, body=body).status_code == 201
            listed = list_user_usages.sync(client=reader, resource_uuid=UUID(RESOURCE), type_="ram", username="alice")
            retrieved = [retrieve_user_usage.sync(uuid=entry.uuid, client=reader).usage for entry in listed]
            if [entry.usage for entry in listed] != [amount] or retrieved != [amount]:
                stale.append((n, amount, [entry.usage for entry in listed], retrieved))
    assert stale == []


def test_a_record_just_made_through_one_server_takes_user_usages_through_the_other(two_servers):
    """User usages do not wait on arrival for reports (usage.USER_USAGES_UNWAITED): a record that
    the other server has just made, which the views may not hold yet, is waited for, not answered 404."""
    _, servers = two_servers
    months = [dt.date(2025 + m // 12, m % 12 + 1, 1) for m in range(14)]  # backfilled: 2025-01 to 2026-02
    refused = []
    with official_client(servers[0]) as first, official_client(servers[1]) as second:
        for n, (resource, month) in enumerate((r, m) for r in WRITER_RESOURCES for m in months):
            writer, other = (first, second) if n % 2 == 0 else (second, first)
            body = ComponentUsageCreateRequest(
                resource=UUID(resource), date=dt.datetime(month.year, month.month, 2, tzinfo=dt.timezone.utc),
                usages=[ComponentUsageItemRequest(type_="ram", amount="4")],
            )
            assert set_usage.sync_detailed(client=writer, body=body).status_code == 201
            record = UUID(events.usage_record_uuid(resource, "ram", month.isoformat()))
            share = ComponentUserUsageCreateRequest(
                username="alice", usage="1.50", user=f"http://x/api/marketplace-offering-users/{OFFERING_USER}/"
            )
            status = set_user_usage.sync_detailed(uuid=record, client=other, body=share).status_code
            if status != 201:
                refused.append((resource, month, status))
    assert refused == []


def read_back(server: LedgerServer, record: str) -> tuple[int | None, str | None]:
    """Retrieves a record, again when the connection broke (a killed worker answers nothing: no read)."""
    for _ in range(5):
        status, usage = read_usage(server.url, token("staff"), record, timeout=30)
        if status is not None:
            return status, usage
    return status, usage


class WriterThread(threading.Thread):
    """Reports usage of its own resource through the servers in turn; after each 201, reads it back through the other."""

    def __init__(self, n: int, servers: tuple[LedgerServer, LedgerServer], stop: threading.Event, name: str = "writer"):
        super().__init__(name=f"{name}-{n}")
        self.n, self.servers, self.stop = n, servers, stop
        self.record = record_uuid(WRITER_RESOURCES[n], "cpu")
        self.answers: list[Answer] = []
        self.stale: list[tuple] = []  # (tag, status, usage read) of a read that missed the acknowledged amount
        self.unread: list[str] = []  # tags of acknowledged writes whose read-back got no answer at all

    def run(self) -> None:
        number = 0
        while not self.stop.is_set():
            writer, reader = self.servers[number % 2], self.servers[(number + 1) % 2]
            amount = f"{number}.{self.n:02d}"
            report = Report(f"{self.name}-report-{number}", WRITER_RESOURCES[self.n], (("cpu", amount),))
            answer = send(writer.url, token("staff"), report, timeout=30)
            self.answers.append(answer)
            if answer.status == 201:
                status, usage = read_back(reader, self.record)
                if status is None:
                    self.unread.append(report.tag)
                elif usage != amount:
                    self.stale.append((report.tag, status, usage))
            number += 1

    def acknowledged(self) -> int:
        return sum(answer.status == 201 for answer in list(self.answers))


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def written_around(servers: tuple[LedgerServer, LedgerServer], kill, name: str = "writer") -> tuple[list, int]:
    """Writer threads writing through both servers; once they have ACKNOWLEDGED_BEFORE_KILL, `kill(writers)`,
    then ACKNOWLEDGED_AFTER_KILL more. Returns the writers and how many were acknowledged at the kill."""
    stop = threading.Event()
    writers = [WriterThread(n, servers, stop, name=name) for n in range(WRITERS)]
    for writer in writers:
        writer.start()
    try:
        acknowledged = lambda: sum(writer.acknowledged() for writer in writers)  # noqa: E731
        wait_for(lambda: acknowledged() >= ACKNOWLEDGED_BEFORE_KILL, 30, "too few acknowledgements to kill under load")
        kill(writers)
        at_kill = acknowledged()
        wait_for(lambda: acknowledged() >= at_kill + ACKNOWLEDGED_AFTER_KILL, 40, "too few acknowledgements after the kill")
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    return writers, at_kill


@pytest.fixture(scope="module")
def killed_holder(two_servers):
    """A dict: the projector's holder killed with SIGKILL while writer threads wrote through both servers."""
    db_path, servers = two_servers
    masters, killed = {server.process.pid for server in servers}, {}

    def kill_the_holder(writers):
        killed["pid"] = lease_holder(db_path)
        killed["master"] = parent_of(killed["pid"])
        os.kill(killed["pid"], signal.SIGKILL)

    writers, at_kill = written_around(servers, kill_the_holder)
    yield {"db_path": db_path, "servers": servers, "masters": masters, "killed": killed["pid"],
           "killed_master": killed["master"], "acknowledged_at_kill": at_kill, "writers": writers}


def test_the_killed_holder_was_a_worker_of_one_of_the_servers(killed_holder):
    assert killed_holder["killed_master"] in killed_holder["masters"]


def assert_every_acknowledged_write_logged(killed: dict) -> None:
    """Every write the writers of a kill got a 201 for is in the log, whole and once."""
    tally = Tally.of_writers(killed["db_path"], killed["writers"])
    assert tally.acknowledged >= killed["acknowledged_at_kill"] + ACKNOWLEDGED_AFTER_KILL
    assert tally.missing == []
    assert tally.sound


def test_every_write_acknowledged_around_the_holders_death_is_in_the_log(killed_holder):
    assert_every_acknowledged_write_logged(killed_holder)


def test_every_acknowledged_write_is_read_back_through_the_other_server_before_and_after_the_kill(killed_holder):
    assert [stale for writer in killed_holder["writers"] for stale in writer.stale] == []
    assert [tag for writer in killed_holder["writers"] for tag in writer.unread] == []


def test_both_servers_read_each_writers_last_acknowledged_amount_after_the_kill(killed_holder):
    for writer in killed_holder["writers"]:
        last = writer.answers[-1]
        assert last.status == 201
        amount = last.report.items[0][1]
        assert [read_back(server, writer.record) for server in killed_holder["servers"]] == [(200, amount)] * 2


def test_another_live_worker_holds_the_lease_after_the_kill(killed_holder):
    db_path, killed = killed_holder["db_path"], killed_holder["killed"]
    wait_for(lambda: lease_taken(db_path), 20, "nobody took the lease over")
    holder = lease_holder(db_path)
    assert holder != killed
    assert parent_of(holder) in killed_holder["masters"]


def test_the_killed_workers_master_starts_a_new_one(killed_holder):
    master, killed = killed_holder["killed_master"], killed_holder["killed"]
    wait_for(lambda: len(children_of(master) - {killed}) == 2, 20, "the master did not replace its killed worker")


def test_ledger_verify_passes_after_the_holders_death(killed_holder):
    verified = subprocess.run([sys.executable, "-m", "ledger", "--db", killed_holder["db_path"], "verify"],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "views identical to a rebuild from the log" in verified.stdout


@pytest.fixture(scope="module")
def killed_node(two_servers, killed_holder):
    """A dict: the first server killed whole (SIGKILL to its master and workers) while writer threads
    wrote through both, the writers then going on through the second alone; the first is restarted after."""
    db_path, (first, second) = two_servers

    def kill_the_first_node(writers):
        first.kill()
        for writer in writers:
            writer.servers = (second, second)

    try:
        # Tags of their own: the log holds the writers' of the holder's death already.
        writers, at_kill = written_around((first, second), kill_the_first_node, name="node-writer")
    finally:
        first.start()
    yield {"db_path": db_path, "survivor": second, "writers": writers, "acknowledged_at_kill": at_kill}


def test_every_write_acknowledged_around_a_nodes_death_is_in_the_log(killed_node):
    assert_every_acknowledged_write_logged(killed_node)


def test_the_surviving_node_reads_each_writers_last_acknowledged_amount(killed_node):
    assert [stale for writer in killed_node["writers"] for stale in writer.stale] == []
    for writer in killed_node["writers"]:
        last = writer.answers[-1]
        assert last.status == 201
        assert read_back(killed_node["survivor"], writer.record) == (200, last.report.items[0][1])


def test_ledger_verify_passes_after_a_nodes_death(killed_node):
    verified = subprocess.run([sys.executable, "-m", "ledger", "--db", killed_node["db_path"], "verify"],
                              capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "views identical to a rebuild from the log" in verified.stdout
