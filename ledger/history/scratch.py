"""Where the history tools rebuild views, and how they read the live database: whatever is rebuilt
is rebuilt in a scratch ledger thrown away afterwards, and the live one is only read, in one snapshot."""

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterable, Iterator

from ledger.backends import Connection
from ledger.database import Ledger
from ledger.history.progress import BATCH, Progress
from ledger.log.store import EventStore
from projections import runner


@contextlib.contextmanager
def scratch_ledger() -> Iterator[Ledger]:
    """An empty ledger in a temporary file, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ledger-scratch-") as directory:
        scratch = Ledger(os.path.join(directory, "scratch.db"))
        try:
            scratch.store.forgo_durability()  # it is thrown away: durability buys nothing
            scratch.init()
            yield scratch
        finally:
            scratch.close()


def project(source: EventStore, scratch: Ledger, until: int, progress: Progress, label: str) -> None:
    """Copies the events up to seq `until` into the scratch ledger and folds them into its views."""
    with progress(length=until, label=label) as bar:
        for batch in _batches(source.read(until=until), BATCH):
            with scratch.store.transaction():
                scratch.store.import_events(batch)
                runner.apply(scratch.conn, batch)
            bar.update(len(batch))


@contextlib.contextmanager
def snapshot(conn: Connection) -> Iterator[None]:
    """A read transaction: every read inside sees the database as of the first one, whoever writes
    meanwhile; on SQLite each of its files (the log's, the views') as of the first read of it."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def _batches(items: Iterable, size: int) -> Iterator[list]:
    items = iter(items)
    while batch := list(itertools.islice(items, size)):
        yield batch
