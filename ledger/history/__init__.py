"""History tools over the log: verify it, audit a resource, replay it to a point, export and import it.

Each function takes `progress`, a factory of progress bars called like `click.progressbar`
(`progress(length=…, label=…)` gives a context manager whose value has `update(steps)`);
the default shows nothing. The live views are only ever read here: whatever is rebuilt is
rebuilt in a scratch database that is thrown away afterwards.
"""

import contextlib
import dataclasses
import datetime as dt
import functools
import itertools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, TextIO

from projections import catalog, runner, usages

from .. import clock, events, periods
from ..backends import Connection
from ..database import Ledger
from ..errors import ChainBroken, StreamConflict
from ..log.hashing import GENESIS_HASH, check_link
from ..log.records import COLUMNS, StoredEvent, canonical_row
from ..log.store import EventStore

BATCH = 5000
EXAMPLES = 3


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


# Verify


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
    with _snapshot(ledger.conn):
        head = store.head()
        unmatched = tuple(_unmatched_head(store, head, seq, hash_) for seq, hash_ in heads)
        unmatched = tuple(line for line in unmatched if line)
        with progress(length=store.count(), label="verifying the chain") as bar:
            try:
                count = store.verify_chain(progress=bar.update)
            except ChainBroken as broken:
                return Verification(head, broken, unmatched_heads=unmatched)
        position = runner.position(ledger.conn)
        with _scratch() as scratch:
            _project(store, scratch, position, progress, "rebuilding the views")
            # The views, not the log's neighbours that no event rebuilds (idempotency keys).
            tables = [name for projection in runner.PROJECTIONS for name in projection.TABLES]
            differences = [d for d in (_compare(ledger.db, scratch.db, name) for name in tables) if d]
    return Verification(head, None, count, position, len(tables), tuple(differences), unmatched)


def _unmatched_head(store: EventStore, head: tuple[int, str], seq: int, hash_: str) -> str | None:
    """Why the log does not hold event `seq` with hash `hash_`; None when it does."""
    found = store.event_hash(seq)
    if found is None:
        return f"kept head {seq} is missing: the log ends at seq {head[0]} (cut short?)"
    if found != hash_:
        return f"kept head {seq} does not match: the log's event {seq} has hash {found}, not {hash_} (rewritten?)"
    return None


def _compare(live, rebuilt, table: str) -> TableDifference | None:
    """Every row of both tables, order-independently, by a merge of both sorted on every column."""
    if not live[table].exists():
        return TableDifference(table, problem="missing from the live database")
    columns = [column.name for column in rebuilt[table].columns]
    live_columns = [column.name for column in live[table].columns]
    if sorted(columns) != sorted(live_columns):
        return TableDifference(table, problem=f"columns differ: live {live_columns}, rebuilt {columns}")
    select = ", ".join(f'"{name}"' for name in columns)
    order = ", ".join(f'"{name}" COLLATE BINARY' for name in columns)
    query = f'SELECT {select} FROM "{table}" ORDER BY {order}'
    counts, examples = {"live": 0, "rebuilt": 0}, []
    for side, row in _unmatched(live.conn.execute(query), rebuilt.conn.execute(query)):
        counts[side] += 1
        if counts[side] <= EXAMPLES:
            examples.append((side, dict(zip(columns, row))))
    if not examples:
        return None
    return TableDifference(table, counts["live"], counts["rebuilt"], tuple(examples))


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


# Audit


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One change of a usage record: a report, a value carried into a period without one, or a
    report of one user's share of the record (`user` names that user)."""

    billing_period: str
    type: str
    seq: int | None  # None for a carried value: it has no event of its own
    occurred_at: str  # business time: the report's date, or the start of the carried period
    recorded_at: str | None
    actor_id: int | None
    username: str | None
    old: str | None  # the record's value before this report; None for its first
    new: str
    missing_usage_policy: str
    description: str
    carried: bool = False
    user: str | None = None


def audit(ledger: Ledger, resource_uuid: str, component_type: str | None = None,
          period: str | None = None) -> list[AuditEntry]:
    """Every report of a resource's usage records (optionally one component type and one month,
    `YYYY-MM`) with who made it and what it replaced, the values carried into months without one,
    and the reports of users' shares of those records, by period, type and seq."""
    conn = ledger.conn

    @functools.cache
    def username(user_id: int | None) -> str | None:
        return None if user_id is None else catalog.username(conn, user_id)

    def wanted(kind: str, billing_period: str) -> bool:
        return component_type in (None, kind) and period in (None, billing_period[:7])

    entries, previous = [], {}
    for event in ledger.store.read_streams(events.usage_streams_prefix(resource_uuid)):
        if event.type != "UsageReported":
            continue
        data = events.upgrade(event).data
        if wanted(data["type"], data["billing_period"]):
            entries.append(AuditEntry(
                data["billing_period"], data["type"], event.seq, event.occurred_at, event.recorded_at,
                event.actor_id, username(event.actor_id), previous.get(event.stream), data["amount"],
                data["missing_usage_policy"], data["description"],
            ))
        previous[event.stream] = data["amount"]
    for record in usages.records(conn, None, {"resource_uuid": resource_uuid}, [], -1):
        if not wanted(record["type"], record["billing_period"]):
            continue
        if _is_carried(conn, record):
            entries.append(AuditEntry(
                record["billing_period"], record["type"], None, record["date"], None, record["modified_by"],
                username(record["modified_by"]), None, record["usage"], record["missing_usage_policy"],
                record["description"], carried=True,
            ))
        shares: dict[str, str] = {}
        for event in ledger.store.read_streams(events.user_usage_streams_prefix(record["uuid"])):
            data = events.upgrade(event).data
            entries.append(AuditEntry(
                record["billing_period"], record["type"], event.seq, event.occurred_at, event.recorded_at,
                event.actor_id, username(event.actor_id), shares.get(data["username"]), data["usage"], "", "",
                user=data["username"],
            ))
            shares[data["username"]] = data["usage"]
    # A record is either reported or carried, never both: within one, order is that of the log.
    return sorted(entries, key=lambda e: (e.billing_period, e.type, e.seq or 0))


def _is_carried(conn: Connection, record: dict) -> bool:
    return bool(usages.stored_record(conn, record["uuid"])["carried"])


# Replay


def replay(ledger: Ledger, until: int | dt.datetime, progress: Progress = Quiet) -> list[dict]:
    """The usage records as they stood after event `until` (a seq), or at a time (by recorded_at),
    rebuilt in a scratch database; each with `carried` added."""
    store = ledger.store
    with _snapshot(ledger.conn):
        position = min(until, store.count()) if isinstance(until, int) else store.seq_at(clock.stored(until))
        with _scratch() as scratch:
            _project(store, scratch, position, progress, "replaying")
            return [
                record | {"carried": _is_carried(scratch.conn, record)}
                for record in usages.records(scratch.conn, None, {}, [], -1)
            ]


# The events behind a record


def record_events(store: EventStore, record: dict) -> list[StoredEvent]:
    """The events behind a usage record, oldest first: its reports, or, for a carried record (which
    has none of its own), the reports of the record its value was carried from."""
    resource_uuid, component_type = record["resource_uuid"], record["type"]
    own = list(store.read_stream(events.usage_stream(resource_uuid, component_type, record["billing_period"])))
    source = None if own else usages.carried_from(store.conn, resource_uuid, component_type, record["billing_period"])
    return own if source is None else list(store.read_stream(events.usage_stream(resource_uuid, component_type, source)))


# Export and import


def export(store: EventStore, output: TextIO, since: int = 0, progress: Progress = Quiet) -> int:
    """Writes the events after seq `since` as JSON Lines, one event each (every column, `data` as a
    JSON object), and returns how many. The data text is written as stored, never parsed."""
    count = 0
    with _snapshot(store.conn):
        since = min(since, store.count())  # past the end: nothing to write (and no seq SQLite cannot hold)
        with progress(length=store.count() - since, label="exporting") as bar:
            for count, row in enumerate(_ticking(store.read_rows(after=since), bar), 1):
                output.write(canonical_row(row))
                output.write("\n")
    return count


class ImportRefused(Exception):
    """An export that cannot be added to this log as it is: nothing of it was written."""


@dataclasses.dataclass(frozen=True)
class Imported:
    """What an import did."""

    appended: int
    skipped: int  # events this log already had: the same seq with the same hash


def import_log(ledger: Ledger, path: str, progress: Progress = Quiet) -> Imported:
    """Adds an export to this log: events it already has are skipped, the rest appended and folded
    into the views, all in one transaction.

    The file's events must chain from the first to the last, the first one onto this log's event
    before it. An event this log has under the same seq with another hash, a gap, a tampered line,
    a column or data of the wrong type or form, or an event the views cannot fold raises
    ImportRefused, and the database is left as it was.
    """
    store = ledger.store
    runner.catch_up(store)  # the imported events are folded onto views that have every event before them
    appended = skipped = 0
    with store.transaction(), open(path, "rb") as lines, \
            progress(length=os.path.getsize(path), label="importing") as bar:
        head = store.head()
        ours: Iterator[tuple] = iter(())  # this log's rows from the file's first seq on, for the overlap
        seq = prev_hash = None
        for number, line in enumerate(lines, 1):
            try:
                event = _parsed(line)
                if seq is None:
                    seq, prev_hash = _joint(store, head[0], event)
                    ours = store.read_rows(after=seq, until=head[0])
                check_link(event, seq + 1, prev_hash)
            except (ValueError, ChainBroken) as error:  # EventDataError and JSON errors are ValueErrors
                raise ImportRefused(f"line {number}: {error}") from None
            if event.seq <= head[0]:
                if event.hash != next(ours)[-1]:
                    raise ImportRefused(
                        f"line {number}: seq {event.seq} does not match the event already here at that seq:"
                        " the file holds another history from there"
                    )
                skipped += 1
            else:
                _append(store, number, event)
                appended += 1
            seq, prev_hash = event.seq, event.hash
            bar.update(len(line))
    return Imported(appended, skipped)


def _joint(store: EventStore, head_seq: int, first: StoredEvent) -> tuple[int, str]:
    """The seq and hash of this log's event just before the file's first one, which must be one of ours."""
    before = first.seq - 1
    if before > head_seq:
        raise ValueError(f"the file starts at seq {first.seq}, but this log ends at seq {head_seq}:"
                         f" the events in between are missing")
    ours = next(store.read_rows(after=before - 1, until=before), None) if before else None
    prev_hash = ours[-1] if ours else GENESIS_HASH
    if first.prev_hash != prev_hash:
        raise ValueError(f"seq {first.seq} does not match this log: its prev_hash is not the hash of the event"
                         f" already here at seq {before} (the file holds another history)")
    return before, prev_hash


def _append(store: EventStore, number: int, event: StoredEvent) -> None:
    """Appends one imported event and folds it into the views, inside the import's transaction."""
    problem = _envelope_problem(event) or _version_problem(event, store.stream_version(event.stream))
    if problem:
        raise ImportRefused(f"line {number}: seq {event.seq}: {problem}")
    try:
        store.import_events([event])
    except StreamConflict as error:
        clash = f"its event_id {event.event_id} is already in the log" if "event_id" in str(error) else error
        raise ImportRefused(f"line {number}: seq {event.seq}: {clash}") from None
    try:
        runner.apply(store.conn, [event])
    except Exception as error:  # what the views cannot fold would break every later fold and rebuild
        raise ImportRefused(f"line {number}: seq {event.seq} cannot be folded into the views:"
                            f" {type(error).__name__}: {error}") from None


def _version_problem(event: StoredEvent, stream_version: int) -> str | None:
    """What is wrong unless the event is the next version of its stream, as every writer appends them."""
    if event.version == stream_version + 1:
        return None
    return f"stream {event.stream!r} expected version {stream_version + 1}, got {event.version}"


def _envelope_problem(event: StoredEvent) -> str | None:
    """What is wrong with an event's place in the log that its data schema cannot see, or None."""
    stream_of = STREAM_OF.get(event.type)
    if stream_of and event.stream != stream_of(event.data):
        return f"a {event.type} on stream {event.stream!r}, not {stream_of(event.data)!r}"
    if event.type == "BillingPeriodStarted":
        period = event.data["billing_period"][:7]
        if event.recorded_at < event.data["starts_at"]:
            return f"billing period {period} recorded as started before it starts"
        if period == "9999-12":  # the month rollover after it could never be decided: every later write would fail
            return f"billing period {period} has no month after it"
    return None


# event type -> the stream its writer puts it on, from its data: later writes of the same record
# or month find it there.
STREAM_OF = {
    "UsageReported": lambda data: events.usage_stream(data["resource_uuid"], data["type"], data["billing_period"]),
    "UserUsageReported": lambda data: events.user_usage_stream(data["component_usage_uuid"], data["username"]),
    "BillingPeriodStarted": lambda data: periods.period_stream(dt.date.fromisoformat(data["billing_period"])),
}


def _parsed(line: bytes) -> StoredEvent:
    """An exported event (data as an object, or as a string in older exports), every column of
    exactly the JSON type and form the log stores, its data valid for its type."""
    row = json.loads(line, parse_constant=_not_a_number)
    if not isinstance(row, dict) or sorted(row) != sorted(COLUMNS):
        raise ValueError(f"not an exported event: expected the keys {', '.join(COLUMNS)}")
    data = json.loads(row["data"], parse_constant=_not_a_number) if isinstance(row["data"], str) else row["data"]
    if not isinstance(data, dict):
        raise ValueError("data is not a JSON object")
    for name, (fits, form) in COLUMN_FORMS.items():
        if not fits(row[name]):
            raise ValueError(f"{name} must be {form}, not {json.dumps(row[name])}")
    event = StoredEvent(**(row | {"data": data}))
    events.upgrade(event)
    return event


def _not_a_number(constant: str):
    raise ValueError(f"{constant} is not a JSON number")


MAX_INTEGER = 2**63 - 1  # SQLite's largest INTEGER


def _is_id(value) -> bool:
    return type(value) is int and 1 <= value <= MAX_INTEGER


def _is_hex(length: int) -> Callable[[object], bool]:
    digits = re.compile(f"[0-9a-f]{{{length}}}")
    return lambda value: type(value) is str and digits.fullmatch(value) is not None


# column -> (the test its exported value must pass, what that is in words)
COLUMN_FORMS = {
    "seq": (_is_id, "a positive integer"),
    "event_id": (_is_hex(32), "32 lowercase hex digits"),
    "stream": (lambda value: type(value) is str and value != "", "a non-empty string"),
    "version": (_is_id, "a positive integer"),
    "type": (lambda value: type(value) is str, "a string"),
    "schema_version": (_is_id, "a positive integer"),
    "occurred_at": (lambda value: type(value) is str and events.is_stored_time(value), "a stored datetime"),
    "recorded_at": (lambda value: type(value) is str and events.is_stored_time(value), "a stored datetime"),
    "actor_id": (lambda value: value is None or _is_id(value), "null or a positive integer"),
    "prev_hash": (_is_hex(64), "64 lowercase hex digits"),
    "hash": (_is_hex(64), "64 lowercase hex digits"),
}


# Scratch databases


@contextlib.contextmanager
def _scratch() -> Iterator[Ledger]:
    """An empty ledger in a temporary file, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ledger-scratch-") as directory:
        scratch = Ledger(os.path.join(directory, "scratch.db"))
        try:
            scratch.store.forgo_durability()  # it is thrown away: durability buys nothing
            scratch.init()
            yield scratch
        finally:
            scratch.close()


def _project(source: EventStore, scratch: Ledger, until: int, progress: Progress, label: str) -> None:
    """Copies the events up to seq `until` into the scratch ledger and folds them into its views."""
    with progress(length=until, label=label) as bar:
        for batch in _batches(source.read(until=until), BATCH):
            with scratch.store.transaction():
                scratch.store.import_events(batch)
                runner.apply(scratch.conn, batch)
            bar.update(len(batch))


@contextlib.contextmanager
def _snapshot(conn: Connection) -> Iterator[None]:
    """A read transaction: every read inside sees the database as of the first one, whoever writes meanwhile."""
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


def _ticking(items: Iterable, bar, step: int = BATCH) -> Iterator:
    """Yields the items, moving the bar every `step` of them: a redraw per event would cost more than the work."""
    done = 0
    for done, item in enumerate(items, 1):
        yield item
        if done % step == 0:
            bar.update(step)
    bar.update(done % step)
