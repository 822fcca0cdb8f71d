"""Verify: that the log holds the heads kept elsewhere, that its hash chain holds, and that the live
views are what a rebuild from the log gives, for operators who must trust the ledger's numbers."""

import dataclasses
from collections.abc import Iterable, Iterator

from ledger.database import Ledger
from ledger.errors import ChainBroken
from ledger.history.progress import Progress, Quiet
from ledger.history.scratch import project, scratch_ledger, snapshot
from ledger.log.store import EventStore
from ledger.backends import Connection
from projections import runner, schema, sql

EXAMPLES = 3


@dataclasses.dataclass(frozen=True)
class TableDifference:
    """Where a live view and the same view rebuilt from the log disagree."""

    table: str
    live_only: int = 0  # rows of the live view that the rebuild does not have
    rebuilt_only: int = 0  # rows of the rebuild that the live view does not have
    examples: tuple[tuple[str, dict], ...] = ()  # ("live" or "rebuilt", row), a few of each
    problem: str = ""  # a difference of shape, when rows could not be compared


@dataclasses.dataclass(frozen=True)
class Verification:
    head: tuple[int, str]  # the log's last seq and hash
    broken: ChainBroken | None = None  # the first bad link of the chain
    events: int = 0  # the chain's length, when it holds
    views_position: int | None = None  # the seq the views were compared at; None when not compared
    tables: int = 0
    differences: tuple[TableDifference, ...] = ()
    unmatched_heads: tuple[str, ...] = ()  # one line per kept head that the log does not hold

    @property
    def failed(self) -> bool:
        return bool(self.broken or self.differences or self.unmatched_heads)


def verify(ledger: Ledger, heads: Iterable[tuple[int, str]] = (), progress: Progress = Quiet) -> Verification:
    """Checks that the log holds each of `heads` (seq, hash) kept elsewhere, walks the hash chain,
    then rebuilds the views in a scratch database and compares them with the live ones, table by
    table. The views are compared only when the chain holds.

    The chain alone cannot show that events were cut off its end: a head kept elsewhere can."""
    store = ledger.store
    with snapshot(ledger.conn):
        # The views first: on SQLite they are a file of their own, whose snapshot is taken at its first
        # read; the log's, taken after, then holds every event they folded (folds follow appends).
        position = runner.position(ledger.conn)
        head = store.head()
        unmatched = tuple(_unmatched_head(store, head, seq, hash_) for seq, hash_ in heads)
        unmatched = tuple(line for line in unmatched if line)
        with progress(length=store.count(), label="verifying the chain") as bar:
            try:
                count = store.verify_chain(progress=bar.update)
            except ChainBroken as broken:
                return Verification(head, broken, unmatched_heads=unmatched)
        with scratch_ledger() as scratch:
            project(store, scratch, position, progress, "rebuilding the views")
            # The views, not the log's neighbours that no event rebuilds (idempotency keys).
            tables = runner.tables()
            differences = [d for d in (_compare(ledger.conn, scratch.conn, table) for table in tables) if d]
    return Verification(head, None, count, position, len(tables), tuple(differences), unmatched)


def _unmatched_head(store: EventStore, head: tuple[int, str], seq: int, hash_: str) -> str | None:
    """Why the log does not hold event `seq` with hash `hash_`; None when it does."""
    found = store.event_hash(seq)
    if found is None:
        return f"kept head {seq} is missing: the log ends at seq {head[0]} (cut short?)"
    if found != hash_:
        return f"kept head {seq} does not match: the log's event {seq} has hash {found}, not {hash_} (rewritten?)"
    return None


def _compare(live: Connection, rebuilt: Connection, table: schema.Table) -> TableDifference | None:
    """Every row of both tables, order-independently, by a merge of both sorted on every column.

    A row id is the database's own numbering, not the log's (PostgreSQL spends one on an insert
    that finds its row there): it is left out."""
    live_columns = schema.columns(live, table.name)
    if not live_columns:
        return TableDifference(table.name, problem="missing from the live database")
    if sorted(live_columns) != sorted(table.columns):
        return TableDifference(table.name, problem=f"columns differ: live {live_columns}, declared {list(table.columns)}")
    columns = [name for name, kind in table.columns.items() if kind != "row_id"]
    counts, examples = {"live": 0, "rebuilt": 0}, []
    for side, row in _unmatched(_sorted_rows(live, table.name, columns), _sorted_rows(rebuilt, table.name, columns)):
        counts[side] += 1
        if counts[side] <= EXAMPLES:
            examples.append((side, dict(zip(columns, row))))
    if not examples:
        return None
    return TableDifference(table.name, counts["live"], counts["rebuilt"], tuple(examples))


def _sorted_rows(conn: Connection, table: str, columns: list[str]) -> Iterable[tuple]:
    """A table's rows sorted on every column, as SQLite sorts them (NULL first, text by its bytes)."""
    quoted = [f'"{name}"' for name in columns]
    order = ", ".join(name + sql.dialect(conn).nulls_first for name in quoted)
    return conn.execute(f'SELECT {", ".join(quoted)} FROM "{table}" ORDER BY {order}')


def _unmatched(live: Iterable[tuple], rebuilt: Iterable[tuple]) -> Iterator[tuple[str, tuple]]:
    """The rows of two sorted row streams that have no equal in the other, tagged with their side."""
    live, rebuilt = iter(live), iter(rebuilt)
    ours, theirs = next(live, None), next(rebuilt, None)
    while ours is not None or theirs is not None:
        if theirs is None or (ours is not None and _sort_key(ours) < _sort_key(theirs)):
            yield "live", ours
            ours = next(live, None)
        elif ours is None or _sort_key(theirs) < _sort_key(ours):
            yield "rebuilt", theirs
            theirs = next(rebuilt, None)
        else:
            ours, theirs = next(live, None), next(rebuilt, None)


# SQLite orders NULL, then numbers, then text (by UTF-8 bytes, which is code point order), then blobs.
_STORAGE_CLASS_RANK = {type(None): 0, int: 1, float: 1, str: 2, bytes: 3}


def _sort_key(row: tuple) -> tuple:
    """A row's place in SQLite's ORDER BY of every column, as a Python key."""
    return tuple((_STORAGE_CLASS_RANK[type(value)], 0 if value is None else value) for value in row)
