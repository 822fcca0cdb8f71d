"""Progress bars for the history tools: the CLI passes click's, callers from Python get none.

A progress factory is called like `click.progressbar`: `progress(length=…, label=…)` gives a
context manager whose value has `update(steps)`.
"""

import contextlib
from collections.abc import Callable, Iterable, Iterator

# Events between two moves of a bar; a rebuild in a scratch database commits as many at once.
BATCH = 5000


class Quiet:
    """A progress bar that shows nothing: the default for callers from Python."""

    def __init__(self, length: int = 0, label: str = ""):
        self.length, self.label = length, label

    def __enter__(self) -> "Quiet":
        return self

    def __exit__(self, *exc_info) -> None:
        """Nothing to close."""

    def update(self, steps: int) -> None:
        """Nothing to draw."""


Progress = Callable[..., contextlib.AbstractContextManager]


def ticking(items: Iterable, bar, step: int = BATCH) -> Iterator:
    """Yields the items, moving the bar every `step` of them: a redraw per event would cost more than the work."""
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        if done % step == 0:
            bar.update(step)
    bar.update(done % step)
