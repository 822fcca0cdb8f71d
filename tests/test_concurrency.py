"""Many clients writing through `ledger serve` with several workers at once, the same records and different ones.

The load runs once for the module (8 threads, 40 reports each, 4 workers); each test holds one
promise that no acknowledged write is lost against what was answered and what the log holds.
"""

import concurrent.futures
import random

import pytest

from ledger import history
from ledger.database import WRITE_ATTEMPTS, Ledger
from ledger.log import events
from ledger.rules import clock

from .conftest import new_database
from .serving import Answer, LedgerServer, Report, Tally, logged_tags, new_ledger, send
from .world import OTHER_RESOURCE, RESOURCE, catalog_document, token

NOW = "2026-03-15T12:00:00Z"
THREADS, REPORTS_PER_THREAD, WORKERS = 8, 40, 4
# Few records, so that writers collide on the same streams; one other resource, so that some do not.
TARGETS = [(RESOURCE, ("cpu", "ram", "storage", "license")), (OTHER_RESOURCE, ("cpu",))]


def planned_reports(thread: int, count: int) -> list[Report]:
    """One thread's reports: 1 to 3 items each, on a random target, each report with a unique tag and amounts."""
    rng = random.Random(thread)
    reports = []
    for number in range(count):
        resource, kinds = rng.choice(TARGETS)
        items = tuple((rng.choice(kinds), f"{thread}{number:04d}.{item}5") for item in range(rng.randint(1, 3)))
        reports.append(Report(f"thread-{thread}-report-{number}", resource, items))
    return reports


def hammer(url: str, key: str, plans: list[list[Report]]) -> list[Answer]:
    """Sends each plan from its own thread, one report after another; returns every answer."""
    with concurrent.futures.ThreadPoolExecutor(len(plans)) as pool:
        per_thread = pool.map(lambda plan: [send(url, key, report) for report in plan], plans)
        return [answer for answers in per_thread for answer in answers]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hammered(request, tmp_path_factory):
    """(database, answers) after the concurrent load, on a SQLite file or a PostgreSQL database; the server has stopped."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_NOW", NOW)
        folder = tmp_path_factory.mktemp("concurrency")
        db_path = new_database(request, request.param, folder)
        new_ledger(db_path, catalog_document())
        plans = [planned_reports(thread, REPORTS_PER_THREAD) for thread in range(THREADS)]
        with LedgerServer(db_path, workers=WORKERS, folder=folder) as server:
            answers = hammer(server.url, token("staff"), plans)
        yield db_path, answers


@pytest.fixture
def hammered_ledger(hammered):
    ledger = Ledger(hammered[0])
    yield ledger
    ledger.close()


def test_concurrent_writers_get_201_for_every_report(hammered):
    _, answers = hammered
    assert len(answers) == THREADS * REPORTS_PER_THREAD
    assert sorted({answer.status for answer in answers}) == [201]


def test_no_answer_to_concurrent_writers_mentions_a_locked_database(hammered):
    _, answers = hammered
    assert not [answer.body for answer in answers if b"locked" in answer.body.lower()]


def test_every_acknowledged_concurrent_report_is_in_the_log_exactly_once(hammered, hammered_ledger):
    _, answers = hammered
    tally = Tally.of(answers, logged_tags(hammered_ledger.store))
    assert tally.acknowledged == len(answers)
    assert (tally.missing, tally.partial, tally.duplicated) == ([], [], [])


def test_the_log_holds_nothing_but_the_acknowledged_reports(hammered, hammered_ledger):
    _, answers = hammered
    expected = sum(len(answer.report.items) for answer in answers)
    assert sum(logged_tags(hammered_ledger.store).values()) == expected


def test_the_hash_chain_verifies_after_concurrent_appends(hammered_ledger):
    assert hammered_ledger.store.verify_chain() == hammered_ledger.store.count()


def test_views_equal_a_rebuild_after_concurrent_writes(hammered_ledger):
    verification = history.verify(hammered_ledger)
    assert verification.broken is None
    assert verification.differences == ()
    assert verification.views_position == hammered_ledger.store.count()


def test_each_record_shows_the_last_report_logged_for_it(hammered_ledger):
    """Racing reports to one record: the view holds the one the log put last, whoever answered first."""
    last = {}
    for event in hammered_ledger.store.read():
        if event.type == "UsageReported":
            last[(event.data["resource_uuid"], event.data["type"])] = event.data["amount"]
    shown = {
        (resource, kind): usage
        for resource, kind, usage in hammered_ledger.conn.execute(
            "SELECT resource_uuid, type, usage FROM component_usages WHERE billing_period = '2026-03-01'"
        )
    }
    assert shown == last
    assert len(shown) == 5


def token_issued(ledger: Ledger, number: int) -> list:
    """A decision to append the next event of one stream (a token for user 1)."""
    stream = "token/1"
    data = {"user_id": 1, "token_digest": f"hmac-sha256:{number:064x}", "expires_at": None}
    return [events.new(stream, ledger.store.stream_version(stream) + 1, "TokenIssued", data, clock.stored(clock.now()))]


def test_a_write_overtaken_at_every_optimistic_attempt_still_lands(ledger, db_path):
    """A busy stream: another writer takes the version each decision expects, until the write decides under the lock."""
    other, overtaken = Ledger(db_path), []

    def overtaken_decision():
        decided = token_issued(ledger, 0)
        if len(overtaken) < WRITE_ATTEMPTS - 1:  # the last attempt holds the writer lock: nobody overtakes it
            other.write(lambda: token_issued(other, len(overtaken) + 1))
            overtaken.append(decided)
        return decided

    try:
        (stored,) = ledger.write(overtaken_decision)
    finally:
        other.close()
    assert len(overtaken) == WRITE_ATTEMPTS - 1
    assert stored.version == WRITE_ATTEMPTS
    assert ledger.store.verify_chain() == ledger.store.count()
