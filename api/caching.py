"""Answers derived from the views, kept until the views move on.

Every write moves the views' log position, so an answer computed at a position stays right
for as long as the position is unchanged: a read-heavy load computes counts and callers once,
a write between two reads makes the next read compute them again.
"""

from collections.abc import Callable, Hashable

from flask import g

from projections import runner


class ViewCache:
    """A bounded map from a key to (views' position, answer), per database."""

    def __init__(self, size: int = 4096):
        self.size, self.entries = size, {}

    def get(self, key: Hashable, compute: Callable[[], object]):
        key = (g.ledger.path, key)
        position = views_position()
        cached = self.entries.get(key)
        if cached and cached[0] == position:
            return cached[1]
        if len(self.entries) >= self.size:
            self.entries.clear()
        answer = compute()
        self.entries[key] = (position, answer)
        return answer


def views_position() -> int:
    """The views' log position, read once per request."""
    if "views_position" not in g:
        g.views_position = runner.position(g.ledger.conn)
    return g.views_position
