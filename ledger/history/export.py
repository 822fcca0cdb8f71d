"""Export: the log as JSON Lines, whole or after a seq, for a copy elsewhere, a backup, or tools
that read JSON (the hash chain can be checked without the ledger)."""

from typing import TextIO

from ledger.history.progress import Progress, Quiet, ticking
from ledger.history.scratch import snapshot
from ledger.log.records import canonical_row
from ledger.log.store import EventStore


def export(store: EventStore, output: TextIO, since: int = 0, progress: Progress = Quiet) -> int:
    """Writes the events after seq `since` as JSON Lines, one event each (every column, `data` as a
    JSON object), and returns how many. The data text is written as stored, never parsed."""
    count = 0
    with snapshot(store.conn):
        since = min(since, store.count())  # past the end: nothing to write (and no seq SQLite cannot hold)
        with progress(length=store.count() - since, label="exporting") as bar:
            for count, row in enumerate(ticking(store.read_rows(after=since), bar), 1):
                output.write(canonical_row(row))
                output.write("\n")
    return count
