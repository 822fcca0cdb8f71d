"""Answers derived from the views, kept until the views move on.

An answer computed at a version of the views stays right for as long as that version is
unchanged. The views' position in the log moves with every write; the seq of the last event
that changed their rows (projections/runner.py) moves only when rows come or go, or the catalog
changes: for a site agent that reports the same records again and again, it stays put. So a
read after a write computes again only what depends on values that writes change.
"""

from collections.abc import Callable, Hashable

from flask import g

from projections import runner


class ViewCache:
    """A bounded map from a key to (views' version, answer), per database."""

    def __init__(self, size: int = 4096):
        self.size, self.entries = size, {}

    def get(self, key: Hashable, compute: Callable[[], object], rows_only: bool = False):
        """The answer for `key`, computed again once the views' position has moved; with
        `rows_only`, an answer that depends only on which rows there are and what they keep
        (their scopes, type, billing period), computed again once rows have changed."""
        key = (g.ledger.path, rows_only, key)
        version = views_positions()[1 if rows_only else 0]
        cached = self.entries.get(key)
        if cached and cached[0] == version:
            return cached[1]
        if len(self.entries) >= self.size:
            self.entries.clear()
        answer = compute()
        self.entries[key] = (version, answer)
        return answer


def views_positions() -> tuple[int, int]:
    """The views' log position and the seq of the last event that changed their rows, read once per request."""
    if "views_positions" not in g:
        g.views_positions = runner.positions(g.ledger.conn)
    return g.views_positions
