"""Answers computed from the views, kept with the views' version they were computed at.

An answer stays right while that version is unchanged: the views' position for anything, the
seq of the last event that changed rows (projections/runner.py) for what only the catalog's rows
decide (every catalog event changes rows; a site agent's reports do not). The caller reads the
version and says which it is.
"""

from collections.abc import Callable, Hashable


class Kept:
    """A bounded map from a key to (views' version, answer); emptied when full."""

    def __init__(self, size: int = 4096):
        self.size, self.entries = size, {}

    def get(self, key: Hashable, version: int, compute: Callable[[], object]):
        """The answer for `key`, from `compute()` unless kept at this `version`."""
        cached = self.entries.get(key)
        if cached and cached[0] == version:
            return cached[1]
        if len(self.entries) >= self.size:
            self.entries.clear()
        answer = compute()
        self.entries[key] = (version, answer)
        return answer
