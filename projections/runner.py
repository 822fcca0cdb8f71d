"""Runs the projections: folds the log's new events into the views (projections/projector.py says who), or all of it again."""

import contextlib
import itertools
from collections.abc import Callable, Iterable

from ledger.backends import Connection
from ledger.log import events as event_types
from ledger.log.records import StoredEvent
from ledger.log.store import EventStore

from . import catalog, schema, site_agents, usages, user_usages

# A projection is a module with NAME, TABLES (named in projections/schema.py) and HANDLERS (event type -> fold
# function), and may have `batch(conn)`: a context manager around each batch folded (for what it keeps meanwhile).
# One that has GATHERED (event types) may gather the rows of those events to write them together: its
# `write_gathered(conn)` writes them before any event of another type is folded, and at the batch's end.
# In order of dependence: a later view may read an earlier one while folding.
PROJECTIONS = (catalog, usages, user_usages, site_agents)
GATHERERS = tuple(projection for projection in PROJECTIONS if hasattr(projection, "GATHERED"))
REBUILD_BATCH = 5000


def create(conn: Connection, read_indexes: bool = True) -> bool:
    """Creates the views and their checkpoints; True when a table of an older shape was dropped, so
    that the views must be rebuilt from the log. Without `read_indexes`, the indexes only reads use
    are left for later (see rebuild)."""
    outdated = schema.create(conn, [schema.CHECKPOINTS])
    # A view added to a ledger starts where the others stand: the events it folds are as new as it is.
    start, start_hash = conn.execute(
        "SELECT position, hash FROM projection_checkpoints ORDER BY position LIMIT 1").fetchone() or (0, None)
    outdated = schema.create(conn, tables(), read_indexes) or outdated
    conn.executemany(
        "INSERT INTO projection_checkpoints (name, position, rows_changed_at, hash) VALUES (?, ?, 0, ?)"
        " ON CONFLICT (name) DO NOTHING",
        [(projection.NAME, start, start_hash) for projection in PROJECTIONS],
    )
    return outdated


def tables() -> list[schema.Table]:
    """Every view's tables, in the order of the views."""
    return [schema.TABLES[name] for projection in PROJECTIONS for name in projection.TABLES]


def drop(conn: Connection) -> None:
    schema.drop(conn, [*tables(), schema.CHECKPOINTS])


def apply(conn: Connection, events: Iterable[StoredEvent]) -> None:
    """Folds events read from the log into every view and moves the checkpoints; call inside a write
    transaction. Each event is validated and upcast to its current shape first.

    A handler returns True when it kept its view's rows: it removed none (a row replaced is
    removed too), and changed none's scopes, type, billing period or username, only values such
    as usage and date; it may have added rows. Any other event is recorded as the last that
    changed rows (`rows_changed_at`), so that a count filtered on what rows keep stays right
    until such an event, once the rows added since are counted to it (api/caching.py).
    """
    last = changed = last_hash = None
    with contextlib.ExitStack() as batch:
        for projection in PROJECTIONS:
            if hasattr(projection, "batch"):
                batch.enter_context(projection.batch(conn))
        for event in events:
            event = event_types.upgrade(event)
            for gatherer in GATHERERS:
                if event.type not in gatherer.GATHERED:
                    gatherer.write_gathered(conn)
            for projection in PROJECTIONS:
                handler = projection.HANDLERS.get(event.type)
                if handler and handler(conn, event) is not True:
                    changed = event.seq
            last, last_hash = event.seq, event.hash
        for gatherer in GATHERERS:  # before the batches end: what they do at their end may read the rows
            gatherer.write_gathered(conn)
    if last is not None:
        conn.execute(
            "UPDATE projection_checkpoints SET position = ?, rows_changed_at = coalesce(?, rows_changed_at), hash = ?",
            (last, changed, last_hash),
        )


def position(conn: Connection) -> int:
    return positions(conn)[0]


def of_the_log(store: EventStore) -> bool:
    """Whether the views were folded from this log: the event at their position is the one they
    folded last. Views kept apart from their log (SQLite's views file) may be another's: a log
    copied without them beside another ledger's, or restored from a backup older than they are."""
    row = store.conn.execute("SELECT position, hash FROM projection_checkpoints ORDER BY position LIMIT 1").fetchone()
    return row is None or not row[0] or store.event_hash(row[0]) == row[1]


# The views' positions as one row: see `positions`.
POSITIONS = "SELECT MIN(position) AS position, MAX(rows_changed_at) AS rows_changed_at FROM projection_checkpoints"


def positions(conn: Connection) -> tuple[int, int]:
    """The views' position in the log, and the seq of the last event that changed their rows."""
    return positions_of(conn.execute(POSITIONS).fetchone())


def positions_of(row: tuple) -> tuple[int, int]:
    """`positions` from the row of POSITIONS."""
    return row[0] or 0, row[1] or 0


def catch_up(store: EventStore, until: int | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Applies every event past the views' checkpoint, in batches of one transaction each; returns how many.

    Each batch reads the checkpoint inside its fold transaction, so two folders never fold an
    event twice: the folders' lock orders them (the projector's lease only spares them the race).
    """
    folded = 0
    while True:
        # Batched: a fold's writes travel to the server with its next read (EventStore.batched).
        with store.fold_transaction(), store.batched():
            events = store.read(after=position(store.conn), until=until, batch=REBUILD_BATCH)
            batch = list(itertools.islice(events, REBUILD_BATCH))  # read() goes on to the log's end
            apply(store.conn, batch)
        folded += len(batch)
        if progress:
            progress(len(batch))
        if len(batch) < REBUILD_BATCH:
            return folded


def rebuild(store: EventStore, until: int | None = None, progress: Callable[[int], None] | None = None) -> None:
    """Drops every view and replays the log into fresh ones, in one transaction: readers see
    the old views until the new ones are complete."""
    store.prepare_folding()
    with store.transaction(), store.fold_transaction():
        drop(store.conn)
        create(store.conn, read_indexes=False)
        catch_up(store, until=until, progress=progress)
        schema.make_read_indexes(store.conn, tables())  # made once from all the rows, not row by row
        # Every row is made anew, under new row ids: nothing counted from the old rows holds.
        store.conn.execute("UPDATE projection_checkpoints SET rows_changed_at = position")
