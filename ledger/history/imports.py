"""Import: an export added to this log, for a copy kept up to date or a ledger moved elsewhere.
Every event of the file is checked before anything is committed: its chain onto this log, its
columns' types and forms, its data, its stream and version, and that the views can fold it."""

import dataclasses
import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterator

from ledger.database import Ledger
from ledger.errors import ChainBroken, StreamConflict
from ledger.history.progress import Progress, Quiet
from ledger.log import events
from ledger.log.hashing import GENESIS_HASH, check_link
from ledger.log.records import COLUMNS, StoredEvent
from ledger.log.store import EventStore
from ledger.rules import periods
from projections import runner


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
    appended = skipped = 0
    with store.transaction(), store.fold_transaction(), open(path, "rb") as lines, \
            progress(length=os.path.getsize(path), label="importing") as bar:
        # The imported events are folded onto views that hold every event before them: caught up
        # here, where nobody appends or folds until the import ends.
        runner.catch_up(store)
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
