"""Crashes: a server killed with SIGKILL under write load, and writes and folds that die half-way through.

A write is one SQLite transaction (the idempotency key and the append), and a fold of the views
is another, so a crash leaves each whole or not at all: these tests kill a server and a writing
process at their worst moments and check that every acknowledged report is there, whole, and
nothing else, and that views a crash left behind catch up with the log.
"""

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ledger import history
from ledger.commands import usage
from ledger.database import Ledger
from ledger.rules.access import Caller
from projections import runner
from projections import usages as usage_view

from .serving import Answer, LedgerServer, Report, Tally, logged_tags, new_ledger, send
from .world import OTHER_RESOURCE, RESOURCE, catalog_document, token

NOW = "2026-03-15T12:00:00Z"
ROOT = Path(__file__).resolve().parents[1]
TARGETS = [(RESOURCE, ("cpu", "ram", "storage", "license")), (OTHER_RESOURCE, ("cpu",))]

THREADS, WORKERS = 8, 4
ACKNOWLEDGED_BEFORE_KILL = 150
STAFF = Caller(id=1, username="staff", is_staff=True)
THREE_ITEMS = usage.SetUsage(
    [usage.UsageItem("cpu", "1.00"), usage.UsageItem("ram", "2.00"), usage.UsageItem("storage", "3.00")],
    resource_uuid=RESOURCE,
)


def write_until_stopped(url: str, thread: int, stop: threading.Event, answers: list[Answer]) -> None:
    number = 0
    while not stop.is_set():
        resource, kinds = TARGETS[number % len(TARGETS)]
        items = tuple((kinds[(number + item) % len(kinds)], f"{thread}{number:05d}.00")
                      for item in range(1 + number % 3))
        report = Report(f"thread-{thread}-report-{number}", resource, items)
        answers.append(send(url, token("staff"), report, timeout=30))
        number += 1


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """(database path, answers): a server SIGKILLed while 8 threads were writing, after 150 acknowledgements."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_NOW", NOW)
        db_path = str(tmp_path_factory.mktemp("crash") / "ledger.db")
        new_ledger(db_path, catalog_document())
        server = LedgerServer(db_path, workers=WORKERS)
        server.start()
        stop, per_thread = threading.Event(), [[] for _ in range(THREADS)]
        threads = [threading.Thread(target=write_until_stopped, args=(server.url, n, stop, per_thread[n]))
                   for n in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while sum(a.status == 201 for answers in per_thread for a in list(answers)) < ACKNOWLEDGED_BEFORE_KILL:
            assert time.monotonic() < deadline, "the server acknowledged too little to be killed under load"
            time.sleep(0.02)
        server.kill()
        stop.set()
        for thread in threads:
            thread.join()
        yield db_path, [answer for answers in per_thread for answer in answers]


@pytest.fixture
def killed_ledger(killed):
    """The database as the killed server left it, opened without bringing its views up to date."""
    ledger = Ledger(killed[0])
    yield ledger
    ledger.close()


def test_every_acknowledged_report_survives_sigkill_of_the_server(killed, killed_ledger):
    _, answers = killed
    tally = Tally.of(answers, logged_tags(killed_ledger.store))
    assert tally.acknowledged >= ACKNOWLEDGED_BEFORE_KILL
    assert tally.missing == []


def test_no_report_is_half_written_or_doubled_when_the_server_is_killed(killed, killed_ledger):
    _, answers = killed
    tally = Tally.of(answers, logged_tags(killed_ledger.store))
    assert (tally.partial, tally.duplicated, tally.refused_but_logged) == ([], [], [])


def test_the_log_holds_only_reports_that_were_sent(killed, killed_ledger):
    _, answers = killed
    sent = {answer.report.tag for answer in answers}
    assert set(logged_tags(killed_ledger.store)) <= sent


def test_the_log_verifies_after_sigkill(killed_ledger):
    assert killed_ledger.store.verify_chain() == killed_ledger.store.count()


def test_views_left_by_the_killed_server_equal_a_rebuild_at_their_position(killed_ledger):
    verification = history.verify(killed_ledger)
    assert (verification.broken, verification.differences) == (None, ())
    assert verification.views_position <= killed_ledger.store.count()


def test_views_catch_up_and_equal_a_rebuild_after_restart(killed):
    ledger = Ledger(killed[0])
    try:
        ledger.init()
        verification = history.verify(ledger)
        assert (verification.broken, verification.differences) == (None, ())
        assert verification.views_position == ledger.store.count()
    finally:
        ledger.close()


def test_a_restarted_server_acknowledges_and_logs_new_reports(killed):
    db_path, _ = killed
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_NOW", NOW)
        with LedgerServer(db_path, workers=WORKERS) as server:
            answer = send(server.url, token("staff"), Report("after-restart", RESOURCE, (("cpu", "42.00"),)))
    ledger = Ledger(db_path)
    try:
        assert answer.status == 201
        assert logged_tags(ledger.store)["after-restart"] == 1
        assert ledger.store.verify_chain() == ledger.store.count()
    finally:
        ledger.close()


def usage_rows(ledger: Ledger) -> int:
    query = "SELECT COUNT(*) FROM component_usages WHERE resource_uuid = ?"
    return ledger.conn.execute(query, (RESOURCE,)).fetchone()[0]


def test_a_fold_failing_mid_batch_leaves_the_views_as_they_were_and_the_write_in_the_log(ledger, monkeypatch):
    applied = []
    fold = usage_view.HANDLERS["UsageReported"]

    def fold_once_then_fail(conn, event):
        if applied:
            raise RuntimeError("projection failed after the first event")
        applied.append(event.seq)
        fold(conn, event)

    before, position = ledger.store.count(), runner.position(ledger.conn)
    with monkeypatch.context() as patch:
        patch.setitem(usage_view.HANDLERS, "UsageReported", fold_once_then_fail)
        stored = usage.set_usage(ledger, STAFF, THREE_ITEMS)  # acknowledged: the append committed
    assert applied  # the first event was folded before the failure rolled the batch back
    assert (len(stored), ledger.store.count()) == (3, before + 3)
    assert (usage_rows(ledger), runner.position(ledger.conn)) == (0, position)
    assert not ledger.conn.in_transaction
    ledger.reach_views()
    assert usage_rows(ledger) == 3
    assert history.verify(ledger).differences == ()


def test_the_ledger_writes_again_after_a_fold_failed(ledger, monkeypatch):
    def fail(conn, event):
        raise RuntimeError("projection failed")

    with monkeypatch.context() as patch:
        patch.setitem(usage_view.HANDLERS, "UsageReported", fail)
        usage.set_usage(ledger, STAFF, THREE_ITEMS)
        with pytest.raises(RuntimeError):  # a read finds the views behind and folds: the failure is seen
            ledger.reach_views()
    before = ledger.store.count()
    usage.set_usage(ledger, STAFF, usage.SetUsage([usage.UsageItem("cpu", "5.00")], resource_uuid=RESOURCE))
    assert ledger.store.count() == before + 1
    assert usage_rows(ledger) == 3


# Run in a child process, which kills itself from inside a transaction, before it can commit or roll back:
# inside the append (the events inserted), or inside the fold that follows the committed append.
KILLED_INSIDE = textwrap.dedent("""
    import os, signal, sys
    from ledger.commands import usage
    from ledger.database import Ledger
    from ledger.backends.sqlite.store import SQLiteEventStore
    from projections import usages as usage_view
    from tests.test_crash import STAFF, THREE_ITEMS

    def die(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[2] == "append":
        insert = SQLiteEventStore.insert_rows
        SQLiteEventStore.insert_rows = lambda store, rows: (insert(store, rows), die())
    else:
        fold = usage_view.HANDLERS["UsageReported"]
        usage_view.HANDLERS["UsageReported"] = lambda conn, event: (fold(conn, event), die())
    usage.set_usage(Ledger(sys.argv[1]), STAFF, THREE_ITEMS)
""")


def kill_inside(db_path: str, where: str) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED_INSIDE, db_path, where], capture_output=True, timeout=60,
                           cwd=ROOT)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def test_a_process_killed_inside_an_append_leaves_no_trace_of_it(db_path):
    ledger = Ledger(db_path)
    before = ledger.store.count()
    ledger.close()
    kill_inside(db_path, "append")
    ledger = Ledger(db_path)
    try:
        assert ledger.store.count() == before
        assert usage_rows(ledger) == 0
        assert ledger.store.verify_chain() == before
        assert history.verify(ledger).differences == ()
    finally:
        ledger.close()


def test_a_process_killed_inside_a_fold_leaves_its_write_whole_and_the_views_catch_up(db_path):
    ledger = Ledger(db_path)
    before, position = ledger.store.count(), runner.position(ledger.conn)
    ledger.close()
    kill_inside(db_path, "fold")
    ledger = Ledger(db_path)
    try:
        assert ledger.store.count() == before + 3
        assert (usage_rows(ledger), runner.position(ledger.conn)) == (0, position)  # the fold left nothing
        ledger.init()
        assert usage_rows(ledger) == 3
        assert history.verify(ledger).differences == ()
    finally:
        ledger.close()
