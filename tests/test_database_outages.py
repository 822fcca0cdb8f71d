"""The database out of reach: a PostgreSQL server restarted, crashed or failed over under a live
ledger, and a database busy past its timeout.

While the database cannot be reached a request is answered 503 with Retry-After, never 500. Once
it can, every process goes on in new sessions by itself: a request that lost its session before
it sent a write is served again in a new one (nobody sees the restart), and so is a usage report
that lost it on the way (decided again, it lands once); another write lost on the way is answered
503, saying that it may or may not have been recorded.
"""

import concurrent.futures
import json
import threading
import time

import pytest

from ledger.backends.postgres.store import PostgresEventStore
from ledger.commands import usage
from ledger.database import Ledger
from ledger.errors import DatabaseLocked, DatabaseUnavailable
from ledger.history import verify
from ledger.log import events

from .conftest import auth
from .postgres import Server, end_sessions
from .serving import LedgerServer, Report, Tally, call, new_ledger, read_usage, send
from .world import OFFERING, OTHER_RESOURCE, RESOURCE, catalog_document, token

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
LIST = "/api/marketplace-component-usages/?page_size=5"
NOW = "2026-03-15T12:00:00Z"


def report(client, amount: str, resource: str = RESOURCE):
    return client.post(SET_USAGE, headers=auth("staff"),
                       json={"resource": resource, "usages": [{"type": "cpu", "amount": amount}]})


def usage_of(client, resource: str = RESOURCE) -> str:
    listed = client.get(f"/api/marketplace-component-usages/?resource_uuid={resource}&type=cpu", headers=auth("staff"))
    assert listed.status_code == 200, listed.data
    return listed.get_json()[0]["usage"]


@pytest.mark.parametrize("db_path", ["sqlite", "postgresql"], indirect=True)
def test_a_database_busy_past_its_timeout_is_a_503_with_retry_after(client, db_path, monkeypatch):
    def busy(*args, **kwargs):
        raise DatabaseLocked("database is locked")

    monkeypatch.setattr(usage, "set_usage", busy)  # as a writer lock, or a row lock, not had in time
    answer = report(client, "7")
    assert answer.status_code == 503
    assert answer.get_json() == {"detail": "The database is unavailable; try again shortly."}
    assert answer.headers["Retry-After"] == "1"


def test_a_path_with_no_route_or_a_view_that_reads_nothing_is_answered_without_the_database(client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise DatabaseUnavailable("the server is down")

    monkeypatch.setattr(Ledger, "arrive", unreachable)  # what a request that reads does first
    assert client.get(LIST, headers=auth("staff")).status_code == 503
    assert client.get("/api/unknown/", headers=auth("staff")).status_code == 404
    assert client.delete(LIST, headers=auth("staff")).status_code == 405
    assert client.get("/api/schema/").get_json()["openapi"].startswith("3.")
    assert client.get("/api/docs/").status_code == 200
    assert client.post("/sign-out").status_code == 303


@pytest.mark.parametrize("db_path", ["postgresql"], indirect=True)
def test_requests_go_on_in_new_sessions_after_the_server_ended_theirs(client, db_path):
    assert report(client, "5").status_code == 201
    assert usage_of(client) == "5.00"
    assert end_sessions(db_path) >= 2  # the request thread's, and its lease's (as a server restart would)
    assert usage_of(client) == "5.00"  # a read: served again in a new session
    end_sessions(db_path)
    assert report(client, "6").status_code == 201  # lost at its decision's read: decided again
    assert usage_of(client) == "6.00"


def lose_the_session_at_the_first_append(monkeypatch, landed: bool) -> list:
    """The server ends the session of the next append of events, after committing it if `landed` (its
    answer lost on the way back), else before; later ones go as usual. Returns the events of each
    append (an append of none: a decision that changes nothing)."""
    append, appends = PostgresEventStore.append, []

    def lost_on_the_way(store, events):
        events = list(events) if not isinstance(events, list) else events
        first = bool(events) and not any(appends)
        appends.append(events)
        if not first:
            return append(store, events)
        if landed:
            append(store, events)
            if store.conn.in_transaction:  # an Idempotency-Key's: its commit lands, and its answer is lost
                store.conn.execute("COMMIT")
        store.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr(PostgresEventStore, "append", lost_on_the_way)
    return appends


def logged_amounts(db_path: str) -> list[str]:
    ledger = Ledger(db_path)
    try:
        return [event.data["amount"] for event in ledger.store.read() if event.type == "UsageReported"]
    finally:
        ledger.close()


@pytest.mark.parametrize("landed", [False, True], ids=["lost before its commit", "answer lost after it"])
@pytest.mark.parametrize("db_path", ["postgresql"], indirect=True)
def test_a_report_whose_session_is_lost_on_the_way_is_decided_again_and_recorded_once(client, db_path, monkeypatch,
                                                                                       landed):
    appends = lose_the_session_at_the_first_append(monkeypatch, landed)
    assert report(client, "8").status_code == 201
    assert len(next(events for events in appends if events)) == 1  # lost on the way
    # Decided again in a new session: appended there, or found in the log already (nothing appended).
    assert usage_of(client) == "8.00"
    assert logged_amounts(db_path) == ["8.00"]


@pytest.mark.parametrize("db_path", ["postgresql"], indirect=True)
def test_a_write_not_safely_made_again_is_a_503_when_its_session_is_lost_on_the_way(client, db_path, monkeypatch):
    identity = {"offering": OFFERING, "name": "agent-1", "version": "1.0.7", "dependencies": []}
    lose_the_session_at_the_first_append(monkeypatch, landed=True)
    answer = client.post("/api/marketplace-site-agent-identities/", json=identity, headers=auth("provider-owner"))
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert "may or may not have been recorded" in answer.get_json()["detail"]
    listed = client.get("/api/marketplace-site-agent-identities/", headers=auth("provider-owner")).get_json()
    assert [identity["name"] for identity in listed] == ["agent-1"]  # it had landed: the 503 says it may have


class Writer(threading.Thread):
    """Reports one resource's usage again and again through a live server, reading each 201 back."""

    def __init__(self, server: LedgerServer, resource: str, name: str):
        super().__init__(daemon=True)
        self.server, self.resource, self.name = server, resource, name
        self.answers, self.reads, self.stopped = [], [], threading.Event()

    def run(self):
        n = 0
        while not self.stopped.is_set():
            n += 1
            answer = send(self.server.url, token("staff"), Report(f"{self.name}-{n}", self.resource, (("cpu", str(n)),)))
            self.answers.append(answer)
            if answer.status == 201:
                self.reads.append((str(n), read_usage(self.server.url, token("staff"), record_uuid(self.resource))))


def record_uuid(resource: str) -> str:
    return events.usage_record_uuid(resource, "cpu", "2026-03-01")


@pytest.fixture(scope="module")
def outages(tmp_path_factory):
    """A live `ledger serve` on a PostgreSQL server of its own, restarted (fast), crashed and started
    again (immediate), and stopped for a while, under two writers; what each request got."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_NOW", NOW)
        folder = tmp_path_factory.mktemp("outages")
        postgres = Server()
        try:
            db_path = postgres.new_database()
            new_ledger(db_path, catalog_document())
            with LedgerServer(db_path, workers=2, folder=folder) as server:
                writers = [Writer(server, resource, name) for resource, name in ((RESOURCE, "a"), (OTHER_RESOURCE, "b"))]
                for writer in writers:
                    writer.start()
                for mode in ("fast", "immediate"):
                    time.sleep(1)
                    postgres.shut_down(mode)
                    postgres.start()
                time.sleep(1)
                for writer in writers:
                    writer.stopped.set()
                    writer.join(60)
                # Down for longer than a request waits for a session: the answer is a 503, whole.
                postgres.shut_down("fast")
                with concurrent.futures.ThreadPoolExecutor(2) as pool:  # each waits for a session, in vain
                    while_down = [pool.submit(call, server.url, "GET", LIST, token("staff")),
                                  pool.submit(send, server.url, token("staff"), Report("down", RESOURCE, (("cpu", "99"),)))]
                    while_down = [future.result() for future in while_down]
                postgres.start()
                after = [(send(server.url, token("staff"), Report(f"after-{n}", RESOURCE, (("cpu", f"{100 + n}"),))),
                          read_usage(server.url, token("staff"), record_uuid(RESOURCE))) for n in range(8)]
                yield {"db_path": db_path, "writers": writers, "while_down": while_down, "after": after,
                       "log": server.log_path}
        finally:
            postgres.stop()


def test_no_request_is_answered_500_while_the_server_restarts(outages):
    statuses = {answer.status for writer in outages["writers"] for answer in writer.answers}
    assert statuses <= {201, 503}, statuses
    assert sum(answer.status == 201 for writer in outages["writers"] for answer in writer.answers) >= 10


def test_every_write_acknowledged_across_the_restarts_is_in_the_log_and_read_back(outages):
    tally = Tally.of_writers(outages["db_path"], outages["writers"])
    assert tally.missing == [] and tally.sound
    for writer in outages["writers"]:  # a read in the restart's moment may be a 503, never stale
        assert [(amount, read) for amount, read in writer.reads if read not in {(200, f"{amount}.00"), (503, None)}] == []
        assert sum(read[0] == 200 for _, read in writer.reads) >= len(writer.reads) - 4


def test_while_the_server_is_down_requests_are_503_with_retry_after(outages):
    (status, body), down = outages["while_down"]
    assert status == 503 and json.loads(body) == {"detail": "The database is unavailable; try again shortly."}
    assert down.status == 503


def test_once_the_server_is_back_every_process_serves_as_before(outages):
    """Each request on a connection of its own, spread over both workers and their threads: none
    is left with a lost session."""
    assert [(answer.status, read) for answer, read in outages["after"]] == [
        (201, (200, f"{100 + n}.00")) for n in range(8)]


def test_the_ledger_verifies_after_the_restarts(outages):
    ledger = Ledger(outages["db_path"])
    try:
        verification = verify(ledger)
    finally:
        ledger.close()
    assert not verification.failed and verification.views_position == verification.head[0]
