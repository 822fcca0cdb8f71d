"""Answers derived from the views, kept until the views move on.

An answer computed at a version of the views stays right for as long as that version is
unchanged. The views' position in the log moves with every write; the seq of the last event
that changed their rows (projections/runner.py) moves only when rows go, are moved, or the
catalog changes: for a site agent that reports records, new or again, it stays put. So a read
after a write computes again only what depends on values that writes change, and a count only
counts the rows added since.
"""

from collections.abc import Callable, Hashable

from flask import g

from projections.kept import Kept

# Both caches read the views' version off `g.ledger.found`: the views' log position and the seq of
# the last event that changed their rows, as the request's arrival found them (Ledger.arrive), or
# presumes them until its first read confirms them (then as found there).


class ViewCache:
    """A bounded map from a key to (views' version, answer), per database."""

    def __init__(self, size: int = 4096):
        self.kept = Kept(size)

    def get(self, key: Hashable, compute: Callable[[], object], rows_only: bool = False):
        """The answer for `key`, computed again once the views' position has moved; with
        `rows_only`, an answer from the catalog's rows (every catalog event changes rows),
        computed again once rows have changed."""
        ledger = g.ledger  # each read through flask's proxy looks it up again
        if not rows_only:
            ledger.note_position_read()
        return self.kept.get((ledger.path, rows_only, key), ledger.found[1 if rows_only else 0], compute)


class CountCache:
    """Counts of rows, kept until rows change (projections/runner.py) and grown by the rows added since."""

    def __init__(self, size: int = 4096):
        self.size, self.entries = size, {}

    def get(self, key: Hashable, count_since: Callable[[int], tuple[int, int]]) -> int:
        """The count for `key`. `count_since(mark)` counts the matching rows past a row mark (all
        of them for 0) and gives the mark of the last row: a count kept with its mark grows by the
        count past it, while no row has been removed or changed what rows keep."""
        ledger = g.ledger
        key = (ledger.path, key)
        ledger.note_position_read()
        position, rows_changed_at = ledger.found
        cached = self.entries.get(key)
        total, mark = 0, 0
        if cached and cached[0] == rows_changed_at:
            if cached[1] == position:  # no event since: nothing added
                return cached[2]
            total, mark = cached[2], cached[3]
        added, mark = count_since(mark)
        if len(self.entries) >= self.size:
            self.entries.clear()
        self.entries[key] = (rows_changed_at, position, total + added, mark or 0)
        return total + added

