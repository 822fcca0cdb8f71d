"""The views' contract: folding the log into them, past their checkpoint, whatever the backend.

A backend's subclass provides the fixture `ledger`: an initialised, empty ledger of that backend.
"""

import pytest

from ledger.rules import clock, periods
from projections import runner, usages


def append_months(ledger, months: int) -> int:
    """Appends the starts of `months` billing months, unfolded; returns the log's head."""
    started = clock.billing_period(clock.now())
    for _ in range(months):
        started = clock.previous_period(started)
    with ledger.store.transaction():
        ledger.store.append(periods.due(started, clock.now()))
    return ledger.store.head()[0]


class ViewsContract:
    """The tests of checkpoints and catch-up every backend must pass."""

    def test_catch_up_folds_every_event_past_the_checkpoint(self, ledger):
        head = append_months(ledger, 5)
        assert runner.position(ledger.conn) == 0
        assert runner.catch_up(ledger.store) == head == 5
        assert runner.position(ledger.conn) == head

    def test_catch_up_with_nothing_new_folds_nothing(self, ledger):
        append_months(ledger, 2)
        runner.catch_up(ledger.store)
        assert runner.catch_up(ledger.store) == 0
        assert runner.position(ledger.conn) == 2

    def test_catch_up_stops_where_asked(self, ledger):
        append_months(ledger, 4)
        assert runner.catch_up(ledger.store, until=3) == 3
        assert runner.position(ledger.conn) == 3
        assert runner.catch_up(ledger.store) == 1

    def test_catch_up_folds_in_batches_each_moving_the_checkpoint(self, ledger, monkeypatch):
        monkeypatch.setattr(runner, "REBUILD_BATCH", 2)
        append_months(ledger, 5)
        folded = []
        assert runner.catch_up(ledger.store, progress=folded.append) == 5
        assert folded == [2, 2, 1]

    def test_a_fold_that_fails_is_rolled_back_whole(self, ledger, monkeypatch):
        append_months(ledger, 3)

        def failing(conn, event):
            raise RuntimeError(f"cannot fold event {event.seq}")

        with monkeypatch.context() as patched, pytest.raises(RuntimeError):
            patched.setitem(usages.HANDLERS, "BillingPeriodStarted", failing)
            runner.catch_up(ledger.store)
        assert runner.position(ledger.conn) == 0
        assert runner.catch_up(ledger.store) == 3
