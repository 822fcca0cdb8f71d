"""The projector: writes only append, the lease holder folds, and every request waits for the views
to hold each write acknowledged before it arrived, or answers 503."""

import dataclasses
import os
import time

import pytest

from ledger.backends.sqlite.locks import Lease
from ledger.commands import usage
from ledger.database import Ledger
from ledger.log import events
from ledger.rules.access import Caller
from ledger.rules import clock
from projections import projector, runner, usages

from .conftest import auth, sqlite_work
from .world import OTHER_RESOURCE, RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)
LIST = f"/api/marketplace-component-usages/?resource_uuid={RESOURCE}&type=cpu"


def wait_until(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def report(amount: str, resource: str = RESOURCE) -> usage.SetUsage:
    return usage.SetUsage([usage.UsageItem("cpu", amount)], resource_uuid=resource)


def appended_unfolded(db_path: str, amount: str) -> None:
    """A report appended by another process's writer whose projector has not folded it yet."""
    writer = Ledger(db_path)
    try:
        held = Lease(writer.store.database_file)
        assert held.acquire()  # the writer's own fold after the append finds the lease taken
        usage.set_usage(writer, STAFF, report(amount))
        held.release()
    finally:
        writer.close()


def test_a_write_appends_and_the_fold_moves_the_views_checkpoint_in_a_transaction_of_its_own(ledger):
    before = ledger.store.count()
    held = Lease(ledger.store.database_file)
    assert held.acquire()
    try:
        usage.set_usage(ledger, STAFF, report("3.00"))
        assert ledger.store.count() == before + 1
        assert runner.position(ledger.conn) == before  # appended, not folded: the lease is another's
    finally:
        held.release()
    assert ledger.reach_views() == before + 1


def test_the_lease_has_one_holder_who_names_itself(db_path):
    first, second = Lease(db_path), Lease(db_path)
    assert first.acquire() and first.acquire()
    assert not second.acquire()
    with open(f"{db_path}.projector-lease") as lease_file:
        assert lease_file.read() == f"{os.getpid()}\n"
    first.release()
    assert second.acquire()
    second.release()


def test_a_request_sees_a_write_another_process_acknowledged_before_it_arrived(client, db_path):
    appended_unfolded(db_path, "7.00")
    listed = client.get(LIST, headers=auth("staff"))
    assert [record["usage"] for record in listed.get_json()] == ["7.00"]


def test_a_request_that_cannot_see_every_acknowledged_write_is_a_503_with_retry_after(client, db_path, monkeypatch):
    client.get(LIST, headers=auth("staff"))  # the application's own connections are open
    monkeypatch.setenv("LEDGER_READ_WAIT", "0.05")
    stuck = Lease(db_path)
    assert stuck.acquire()  # a holder that never folds
    try:
        appended_unfolded_with_lease_held(db_path, "8.00")
        answer = client.get(LIST, headers=auth("staff"))
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "1"
        assert answer.get_json() == {"detail": "The ledger is catching up; try again shortly."}
    finally:
        stuck.release()
    assert [record["usage"] for record in client.get(LIST, headers=auth("staff")).get_json()] == ["8.00"]


def test_the_holder_lets_appends_gather_after_a_fold_and_folds_them_together(db_path, monkeypatch):
    monkeypatch.setattr(projector, "FOLD_GAP_SECONDS", 0.5)  # far longer than the writes below take
    folded = []

    def counted_catch_up(store, *args, **kwargs):
        folded.append(catch_up(store, *args, **kwargs))
        return folded[-1]

    catch_up = runner.catch_up
    monkeypatch.setattr(runner, "catch_up", counted_catch_up)
    folding, writer = Ledger(db_path, sync_on_commit=False), Ledger(db_path)
    holder = projector.Projector(folding.store, folding.lease)
    try:
        # The writer's first write folds for itself if the lease is free (the holder then waits
        # TAKEOVER_SECONDS before trying again, long enough for every write below).
        assert wait_until(lambda: folding.lease.held)
        usage.set_usage(writer, STAFF, report("1.00"))
        writer.reach_views()  # folded by the holder, whose gap begins
        # Counted when the holder's catch_up returns, a moment after its commit let the reader go on.
        assert wait_until(lambda: [n for n in folded if n] == [1])
        for kind in ("ram", "storage", "license", "cpu"):  # appended while the holder waits
            writer.arrive(usage.SET_USAGE_UNWAITED)  # as a request does: a report waits for no other report
            usage.set_usage(writer, STAFF, usage.SetUsage([usage.UsageItem(kind, "2.00")], resource_uuid=RESOURCE))
            holder.wake()  # as the process's group committer does after each commit
        assert writer.reach_views() == writer.store.count()
        assert wait_until(lambda: [n for n in folded if n] == [1, 4])  # four commits, one fold
    finally:
        holder.stop()
        writer.close()
        folding.close()


def appended_unfolded_with_lease_held(db_path: str, amount: str, resource: str = RESOURCE) -> None:
    """A report appended while this process's test holds the lease (the writer's fold finds it taken)."""
    writer = Ledger(db_path)
    try:
        usage.set_usage(writer, STAFF, report(amount, resource))
        assert runner.position(writer.conn) < writer.store.count()
    finally:
        writer.close()


def test_a_decision_reads_stream_versions_as_the_views_hold_them(ledger, db_path):
    usage.set_usage(ledger, STAFF, report("1.00"))
    stream = events.usage_stream(RESOURCE, "cpu", "2026-03-01")
    appended_unfolded(db_path, "2.00")
    with ledger.store.deciding_at(runner.position(ledger.conn)):
        assert ledger.store.stream_version(stream) == 1  # the views have not folded version 2
    assert ledger.store.stream_version(stream) == 2


def test_a_reports_decision_reads_one_entry_of_its_records_stream_however_many_versions_it_has(ledger):
    """A record's stream gains a version at each report that changes it (about 1,440 a month for a
    record reported every half hour); the decision reads the log's version of it at every report."""
    for amount in range(1, 301):
        usage.set_usage(ledger, STAFF, report(f"{amount}.00"))
    usage.set_usage(ledger, STAFF, report("1.00", resource=OTHER_RESOURCE))

    def work(resource: str) -> int:
        found = []
        steps = sqlite_work(ledger.conn, lambda: found.append(
            usages.report_reads(ledger.conn, None, resource, "2026-03-01", ["cpu"])))
        stream, held = events.usage_stream(resource, "cpu", "2026-03-01"), found[0]["records"]["cpu"]
        assert found[0]["logged"] == {stream: held["version"]}
        return steps

    assert work(RESOURCE) <= work(OTHER_RESOURCE) + 1


def test_an_unchanged_report_decided_on_views_that_trail_the_log_is_decided_again(ledger, db_path):
    """The views say 1.00, the log already says 2.00: sending 1.00 again is a change, not a repeat."""
    usage.set_usage(ledger, STAFF, report("1.00"))
    stale = ledger.reach_views()
    appended_unfolded(db_path, "2.00")
    decided_at = []
    original = ledger.reach_views

    def trailing_views(timeout=None):  # the first decision reads views that miss the 2.00
        decided_at.append(runner.position(ledger.conn))
        return stale if len(decided_at) == 1 else original(timeout)

    ledger.reach_views = trailing_views
    stored = usage.set_usage(ledger, STAFF, report("1.00"))
    assert [event.data["amount"] for event in stored] == ["1.00"]
    assert len(decided_at) == 2
    assert projector.reach(ledger.store, ledger.lease) == ledger.store.count()


def test_an_unchanged_report_whose_records_the_log_holds_as_read_checks_nothing_again(ledger, monkeypatch):
    """Its one read holds the log's versions of its streams beside the views': equal, the report is
    true as read, and its append has no read set to check (a statement saved per repeated report)."""
    usage.set_usage(ledger, STAFF, report("1.00"))
    ledger.reach_views()
    monkeypatch.setattr(type(ledger.store), "stream_versions", lambda *args: pytest.fail("read set checked again"))
    assert usage.set_usage(ledger, STAFF, report("1.00")) == []


def test_a_request_writes_without_waiting_for_appends_made_after_it_arrived(ledger, db_path, monkeypatch):
    """Another writer appends to another stream after the request arrived, and nobody folds it: the
    request's write is concurrent with it and goes on; a write that did not arrive waits and gives up."""
    monkeypatch.setenv("LEDGER_READ_WAIT", "0.05")
    ledger.roll_periods()  # known started, as after a server's first write: its first write in a month waits
    stuck = Lease(db_path)
    assert stuck.acquire()  # a holder that never folds
    try:
        ledger.arrive()
        appended_unfolded_with_lease_held(db_path, "5.00", resource=OTHER_RESOURCE)
        stored = usage.set_usage(ledger, STAFF, report("1.00"))
        assert [event.data["amount"] for event in stored] == ["1.00"]
        with pytest.raises(projector.ViewsBehind):
            usage.set_usage(ledger, STAFF, report("2.00"))  # the arrival was used by the write before
    finally:
        stuck.release()


def test_a_request_whose_stream_moved_after_it_arrived_decides_again_on_views_that_hold_the_move(ledger, db_path, monkeypatch):
    monkeypatch.setenv("LEDGER_READ_WAIT", "0.05")
    ledger.roll_periods()
    stuck = Lease(db_path)
    assert stuck.acquire()
    try:
        ledger.arrive()
        appended_unfolded_with_lease_held(db_path, "5.00")
        count = ledger.store.count()
        with pytest.raises(projector.ViewsBehind):  # decided on views without the 5.00, then waited for them
            usage.set_usage(ledger, STAFF, report("1.00"))
        assert ledger.store.count() == count
    finally:
        stuck.release()
    stored = usage.set_usage(ledger, STAFF, report("1.00"))
    assert [(event.version, event.data["amount"]) for event in stored] == [(2, "1.00")]


def test_the_usage_view_holds_each_records_stream_version_and_0_for_a_carried_one(ledger):
    """A report decides on the version its record's row holds (instead of asking the log)."""
    ledger.roll_periods()
    backfill = usage.SetUsage([usage.UsageItem("cpu", "4.00", missing_usage_policy="reuse")], resource_uuid=RESOURCE,
                              date=clock.parse_datetime("2026-02-10T00:00:00Z"))
    usage.set_usage(ledger, STAFF, backfill)
    usage.set_usage(ledger, STAFF, dataclasses.replace(backfill, items=[usage.UsageItem("cpu", "5.00", missing_usage_policy="reuse")]))
    ledger.reach_views()

    def row(period: str) -> tuple:
        uuid = events.usage_record_uuid(RESOURCE, "cpu", period)
        record = usages.stored_record(ledger.conn, uuid)
        return record["carried"], record["version"], ledger.store.stream_version(events.usage_stream(RESOURCE, "cpu", period))

    assert row("2026-02-01") == (0, 2, 2)
    assert row("2026-03-01") == (1, 0, 0)  # carried from February: its stream has no event
    usage.set_usage(ledger, STAFF, report("6.00"))
    ledger.reach_views()
    assert row("2026-03-01") == (0, 1, 1)
