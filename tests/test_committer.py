"""Group commit: concurrent writes of one process share transactions, each rolled back alone on failure."""

import fcntl
import os
import sqlite3
import threading
import time

import pytest

from ledger.backends.sqlite import connection, store
from ledger.commands import usage
from ledger.committer import GroupCommitter
from ledger.database import Ledger
from ledger.errors import DatabaseLocked, DatabaseUnavailable, StreamConflict
from ledger.log import events
from ledger.rules.access import Caller

from .world import OTHER_RESOURCE, RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)


@pytest.fixture
def committer(db_path):
    shared = GroupCommitter(db_path)
    yield shared
    shared.close()


def report(ledger, amount, resource=RESOURCE):
    kinds = ("cpu", "ram") if resource == RESOURCE else ("cpu",)
    items = [usage.UsageItem(type=kind, amount=f"{amount}.00") for kind in kinds]
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=items, resource_uuid=resource))


def test_concurrent_writes_all_land_once_with_a_gapless_log(db_path, committer):
    before = Ledger(db_path)
    first_seq = before.store.count()
    before.close()
    threads, failures = [], []

    def write(n):
        ledger = Ledger(db_path, committer=committer)
        try:
            for amount in range(n * 10, n * 10 + 10):
                report(ledger, amount, RESOURCE if n % 2 else OTHER_RESOURCE)
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            failures.append(error)
        finally:
            ledger.close()

    for n in range(6):
        threads.append(threading.Thread(target=write, args=(n,)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    ledger = Ledger(db_path)
    reported = [e for e in ledger.store.read(after=first_seq) if e.type == "UsageReported"]
    assert len(reported) == 3 * 10 * 2 + 3 * 10
    assert [e.seq for e in ledger.store.read()] == list(range(1, ledger.store.count() + 1))
    assert ledger.store.verify_chain() == ledger.store.count()
    ledger.close()


def test_a_failing_write_is_rolled_back_alone(db_path, committer, now):
    ledger = Ledger(db_path)
    stream = events.usage_stream(RESOURCE, "cpu", "2026-03-01")
    data = {"resource_uuid": RESOURCE, "type": "cpu", "billing_period": "2026-03-01",
            "plan_period_uuid": "0e000000000000000000000000000001", "amount": "1.00", "description": "",
            "missing_usage_policy": "none"}
    good = events.new(stream, 1, "UsageReported", data, "2026-03-15T12:00:00.000000Z", 1)
    stale = events.new(stream, 1, "UsageReported", data | {"amount": "2.00"}, "2026-03-15T12:00:00.000000Z", 1)
    results = {}
    barrier = threading.Barrier(2)

    def submit(name, decided):
        barrier.wait()
        try:
            results[name] = committer.submit([decided])
        except StreamConflict as error:
            results[name] = error

    threads = [threading.Thread(target=submit, args=pair) for pair in (("good", good), ("stale", stale))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(type(result).__name__ for result in results.values())
    assert outcomes == ["StreamConflict", "list"]
    assert [e.data["amount"] for e in ledger.store.read_stream(stream)] in (["1.00"], ["2.00"])
    ledger.close()


def test_writers_give_up_after_the_busy_timeout(db_path, monkeypatch):
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_SECONDS", 0.05)
    descriptor = os.open(f"{db_path}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    ledger = Ledger(db_path)
    try:
        with pytest.raises(DatabaseLocked, match="locked"):
            ledger.roll_periods()
    finally:
        ledger.close()
        os.close(descriptor)


def test_a_failed_commit_fails_every_write_of_its_batch(committer, monkeypatch):
    def broken_rollover():
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(committer.ledger, "append_rollover", broken_rollover)
    stream = events.usage_stream(RESOURCE, "cpu", "2026-03-01")
    data = {"resource_uuid": RESOURCE, "type": "cpu", "billing_period": "2026-03-01",
            "plan_period_uuid": "0e000000000000000000000000000001", "amount": "1.00", "description": "",
            "missing_usage_policy": "none"}
    with pytest.raises(DatabaseUnavailable, match="disk I/O error"):
        committer.submit([events.new(stream, 1, "UsageReported", data, "2026-03-15T12:00:00.000000Z", 1)])
    assert committer.ledger.store.stream_version(stream) == 0


def usage_event(resource: str, amount: str) -> events.NewEvent:
    stream = events.usage_stream(resource, "cpu", "2026-03-01")
    data = {"resource_uuid": resource, "type": "cpu", "billing_period": "2026-03-01",
            "plan_period_uuid": "0e000000000000000000000000000001", "amount": amount, "description": "",
            "missing_usage_policy": "none"}
    return events.new(stream, 1, "UsageReported", data, "2026-03-15T12:00:00.000000Z", 1)


def submit_while_another_process_writes(committer, db_path, resources, hold_until):
    """Submits a write per resource, each from its own thread, while the writer lock is held
    elsewhere; returns each thread's outcome (its events or its error)."""
    descriptor = os.open(f"{db_path}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    outcomes = {}

    def submit(resource):
        try:
            outcomes[resource] = committer.submit([usage_event(resource, "1.00")])
        except Exception as error:  # noqa: BLE001 - the outcome is what is asserted
            outcomes[resource] = error

    threads = [threading.Thread(target=submit, args=(resource,)) for resource in resources]
    for thread in threads:
        thread.start()
    hold_until()
    os.close(descriptor)
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_writes_queued_while_waiting_for_the_write_lock_join_its_commit(committer, db_path):
    commits = []
    committer.ledger.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    resources = [f"{0xA << 124 | n:032x}" for n in range(3)]

    def all_queued():  # one thread waits for the lock, every write waits in the queue
        deadline = time.monotonic() + 5
        while len(committer.queue) < len(resources) and time.monotonic() < deadline:
            time.sleep(0.001)

    outcomes = submit_while_another_process_writes(committer, db_path, resources, all_queued)
    assert all(len(outcomes[resource]) == 1 for resource in resources)
    assert commits == ["COMMIT"]


def test_writes_waiting_for_a_write_lock_that_never_comes_all_fail(committer, db_path, monkeypatch):
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_SECONDS", 0.3)
    resources = [f"{0xB << 124 | n:032x}" for n in range(3)]
    outcomes = submit_while_another_process_writes(committer, db_path, resources, lambda: time.sleep(1))
    assert all(isinstance(outcomes[resource], DatabaseLocked) for resource in resources)
    assert committer.queue == []
    assert all(committer.ledger.store.stream_version(events.usage_stream(r, "cpu", "2026-03-01")) == 0 for r in resources)


def test_a_write_is_answered_after_its_log_is_flushed_outside_the_writer_lock(committer, db_path, monkeypatch):
    """The commit does not wait for the disk (NORMAL); the committer flushes the log once the
    writer lock is free for others, and answers only then."""
    assert committer.ledger.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    flushes, fdatasync = [], os.fdatasync

    def observed_fdatasync(descriptor):
        probe = os.open(f"{db_path}.writer-lock", os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the writer lock were still held
            fcntl.flock(probe, fcntl.LOCK_UN)
        finally:
            os.close(probe)
        flushes.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        fdatasync(descriptor)

    monkeypatch.setattr(store.os, "fdatasync", observed_fdatasync)
    stored = committer.submit([usage_event(RESOURCE, "4.00")])
    assert len(stored) == 1
    assert flushes == [f"{os.path.realpath(db_path)}-wal"]


def test_with_ledger_sync_normal_the_log_is_not_flushed(db_path, monkeypatch):
    monkeypatch.setenv("LEDGER_SYNC", "normal")
    flushes = []
    monkeypatch.setattr(store.os, "fdatasync", flushes.append)
    shared = GroupCommitter(db_path)
    try:
        assert len(shared.submit([usage_event(RESOURCE, "5.00")])) == 1
    finally:
        shared.close()
    assert flushes == []


def test_a_failed_flush_fails_the_writes_of_its_batch(committer, monkeypatch):
    def broken_fdatasync(descriptor):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.os, "fdatasync", broken_fdatasync)
    with pytest.raises(OSError):
        committer.submit([usage_event(RESOURCE, "6.00")])


def test_a_submission_keeps_its_savepoint_in_memory_not_in_a_temporary_file(committer, monkeypatch):
    """A savepoint copies each page it changes first. Past 64 KiB of copies (a set_usage on a
    large database), SQLite's default moved them into a temporary file: a file created, written
    and deleted for each write."""
    def reports(resources, version):
        return [events.new(events.usage_stream(resource, "cpu", "2026-03-01"), version, "UsageReported", {
            "resource_uuid": resource, "type": "cpu", "billing_period": "2026-03-01",
            "plan_period_uuid": "0e000000000000000000000000000001", "amount": "1.00", "description": "",
            "missing_usage_policy": "none"}, "2026-03-15T12:00:00.000000Z", 1) for resource in resources]

    resources = [f"{n * 7919 % 4000:032x}" for n in range(4000)]
    with committer.ledger.store.transaction():
        committer.ledger.store.append(reports(resources, 1))
    open_files, append = [], committer.ledger.store.append

    def observed_append(decided):
        stored = append(decided)  # inside the submission's savepoint, once its pages have changed
        open_files.extend(os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                          if os.path.exists(f"/proc/self/fd/{fd}"))
        return stored

    monkeypatch.setattr(committer.ledger.store, "append", observed_append)
    # Streams spread over the log's stream index: each report changes a page of its own.
    assert len(committer.submit(reports(resources[::50], 2))) == 80
    assert open_files and not [name for name in open_files if "etilqs" in name]
