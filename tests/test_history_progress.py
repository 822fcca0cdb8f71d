"""The history tools' progress bars and the scratch databases they rebuild in: each bar ends at
the length it announced, and a scratch ledger leaves no file behind."""

import io
import os
import tempfile

import pytest

from ledger import history
from ledger.history.progress import ticking
from ledger.history.scratch import scratch_ledger

from .test_history import report


class Bar(history.Quiet):
    """A progress bar that remembers every step it was moved."""

    def __init__(self, length: int = 0, label: str = ""):
        super().__init__(length, label)
        self.steps: list[int] = []

    def update(self, steps: int) -> None:
        self.steps.append(steps)


@pytest.fixture
def bars() -> list[Bar]:
    return []


@pytest.fixture
def progress(bars):
    def make(length: int = 0, label: str = "") -> Bar:
        bars.append(Bar(length, label))
        return bars[-1]
    return make


def test_ticking_yields_every_item_and_moves_the_bar_by_all_of_them_in_steps():
    bar = Bar(7)
    assert list(ticking(range(7), bar, step=3)) == list(range(7))
    assert bar.steps == [3, 3, 1]


def test_ticking_over_nothing_moves_the_bar_by_nothing():
    bar = Bar()
    assert list(ticking([], bar)) == []
    assert sum(bar.steps) == 0


def test_verify_bars_end_at_the_chain_and_the_views_position(ledger, progress, bars):
    report(ledger, cpu="10.00", ram="2.00")
    report(ledger, cpu="12.00")
    history.verify(ledger, progress=progress)
    count = ledger.store.count()
    assert [(bar.label, bar.length, sum(bar.steps)) for bar in bars] == [
        ("verifying the chain", count, count), ("rebuilding the views", count, count),
    ]


def test_replay_and_export_bars_end_at_the_events_they_read(ledger, progress, bars):
    report(ledger, cpu="10.00")
    then = ledger.store.count()
    report(ledger, cpu="20.00")
    history.replay(ledger, then, progress=progress)
    written = history.export(ledger.store, io.StringIO(), since=1, progress=progress)
    assert [(bar.label, bar.length, sum(bar.steps)) for bar in bars] == [
        ("replaying", then, then), ("exporting", written, written),
    ]


def test_a_scratch_ledger_is_empty_and_its_file_is_removed_afterwards():
    with scratch_ledger() as scratch:
        path = scratch.path
        assert os.path.dirname(path).startswith(tempfile.gettempdir())
        assert scratch.store.count() == 0
    assert not os.path.exists(path)
