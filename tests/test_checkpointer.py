"""Background checkpoints: the log is copied into the database file off the writers' path, and
it starts over even while writers follow each other without a pause."""

import os
import time

import pytest

from ledger.backends.sqlite import checkpointer
from ledger.database import Ledger
from ledger.log import events


def report(ledger: Ledger, n: int) -> None:
    stream = f"usage/{n:032x}/cpu/2026-11"
    data = {"resource_uuid": f"{n:032x}", "type": "cpu", "billing_period": "2026-11-01", "plan_period_uuid": f"{n:032x}",
            "amount": "1.00", "description": "x" * 500, "missing_usage_policy": "none"}
    ledger.write(lambda: [events.new(stream, 1, "UsageReported", data, "2026-11-15T12:00:00.000000Z", 1)])


def log_pages(path: str) -> int:
    return os.path.getsize(path + "-wal") // 4096 if os.path.exists(path + "-wal") else 0


@pytest.fixture
def quick(monkeypatch):
    monkeypatch.setattr(checkpointer, "INTERVAL_SECONDS", 0.005)
    monkeypatch.setattr(checkpointer, "RESTART_PAGES", 100)


def test_a_writer_with_background_checkpoints_leaves_them_to_the_thread(ledger, db_path, quick):
    writer = Ledger(db_path, background_checkpoints=True)
    assert writer.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == checkpointer.WRITER_CHECKPOINT_PAGES
    size = os.path.getsize(db_path)
    for n in range(50):
        report(writer, n)
    # In WAL mode only a checkpoint writes the database file; the writer itself never reached one.
    deadline = time.monotonic() + 10
    while os.path.getsize(db_path) <= size:
        assert time.monotonic() < deadline, "the background checkpointer copied nothing"
        time.sleep(0.01)
    writer.close()
    assert not writer.checkpointer.thread.is_alive()
    assert ledger.store.count() >= 50 and ledger.store.verify_chain() == ledger.store.count()


def test_the_log_starts_over_while_writers_never_pause(ledger, db_path, quick):
    writer = Ledger(db_path, background_checkpoints=True)
    written, largest = 0, 0
    while written < 3000:  # one write after another, as fast as the writer goes
        report(writer, written)
        written += 1
        largest = max(largest, log_pages(db_path))
    writer.close()
    # Each write appends at least two pages to the log; a log that never started over would hold them all.
    assert largest < written
    assert ledger.store.count() >= written and ledger.store.verify_chain() == ledger.store.count()
