"""Replay: the usage records as they stood at an earlier point of the log, for an operator asking
what the ledger answered then; rebuilt aside, the live views untouched."""

import datetime as dt

from ledger.database import Ledger
from ledger.history.audit import is_carried
from ledger.history.progress import Progress, Quiet
from ledger.history.scratch import project, scratch_ledger, snapshot
from ledger.rules import clock
from projections import usages


def replay(ledger: Ledger, until: int | dt.datetime, progress: Progress = Quiet) -> list[dict]:
    """The usage records as they stood after event `until` (a seq), or at a time (by recorded_at),
    rebuilt in a scratch database; each with `carried` added."""
    store = ledger.store
    with snapshot(ledger.conn):
        position = min(until, store.count()) if isinstance(until, int) else store.seq_at(clock.stored(until))
        with scratch_ledger() as scratch:
            project(store, scratch, position, progress, "replaying")
            return [
                record | {"carried": is_carried(scratch.conn, record)}
                for record in usages.records(scratch.conn, None, {}, [], usages.EVERY)
            ]
