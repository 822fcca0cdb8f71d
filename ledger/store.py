"""The append-only, hash-chained event log: the only module that knows the events table."""

import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator

import sqlite_utils

from . import clock

GENESIS_HASH = "0" * 64
BUSY_TIMEOUT_SECONDS = 60
READ_BATCH = 2000


class StoreError(Exception):
    """Base of the event store's errors."""


class StreamConflict(StoreError):
    """An append expected a stream version that another writer has already taken."""


class ChainBroken(StoreError):
    """An event's hash does not follow from its content and its predecessor."""

    def __init__(self, seq: int, reason: str):
        super().__init__(f"hash chain broken at seq {seq}: {reason}")
        self.seq = seq


@dataclasses.dataclass(frozen=True)
class NewEvent:
    """An event a command has decided on, not yet in the log."""

    stream: str
    version: int
    type: str
    data: dict
    occurred_at: str
    actor_id: int | None = None
    schema_version: int = 1


@dataclasses.dataclass(frozen=True)
class StoredEvent:
    seq: int
    event_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    occurred_at: str
    recorded_at: str
    actor_id: int | None
    data: dict
    prev_hash: str
    hash: str

    def row(self) -> dict:
        """Every column, as stored (and as exported)."""
        # vars, not dataclasses.asdict: asdict deep-copies `data`, which is then replaced anyway.
        return {**vars(self), "data": canonical(self.data)}


COLUMNS = [f.name for f in dataclasses.fields(StoredEvent)]


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, row: dict) -> str:
    """SHA-256 of the previous hash and every other column of the event."""
    content = {name: row[name] for name in COLUMNS if name not in ("prev_hash", "hash")}
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


def connect(path: str) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE."""
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    sync = os.environ.get("LEDGER_SYNC", "full").lower()
    conn.execute(f"PRAGMA synchronous={'NORMAL' if sync == 'normal' else 'FULL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class EventStore:
    """Appends events with optimistic concurrency per stream; reads them back in order."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.db = sqlite_utils.Database(conn)

    def create_schema(self) -> None:
        if "events" in self.db.table_names():
            return
        self.db["events"].create(
            {
                "seq": int, "event_id": str, "stream": str, "version": int, "type": str,
                "schema_version": int, "occurred_at": str, "recorded_at": str, "actor_id": int,
                "data": str, "prev_hash": str, "hash": str,
            },
            pk="seq",
            not_null={"event_id", "stream", "version", "type", "schema_version",
                      "occurred_at", "recorded_at", "data", "prev_hash", "hash"},
        )
        self.db["events"].create_index(["event_id"], unique=True)
        self.db["events"].create_index(["stream", "version"], unique=True)
        for action in ("UPDATE", "DELETE"):
            self.conn.execute(
                f"CREATE TRIGGER events_no_{action.lower()} BEFORE {action} ON events "
                f"BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END"
            )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken up front so that deciding and appending are serialised."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def stream_version(self, stream: str) -> int:
        """The version of a stream's last event; 0 for a stream with none."""
        row = self.conn.execute("SELECT MAX(version) FROM events WHERE stream = ?", (stream,)).fetchone()
        return row[0] or 0

    def last_event(self, stream: str) -> StoredEvent | None:
        row = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1",
            (stream,),
        ).fetchone()
        return _stored(row) if row else None

    def last_of_greatest_stream(self, prefix: str) -> StoredEvent | None:
        """The last event of the greatest stream name starting with `prefix`, e.g. the latest `period/YYYY-MM`."""
        row = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE stream >= ? AND stream < ?"
            " ORDER BY stream DESC, version DESC LIMIT 1",
            (prefix, prefix + "\uffff"),
        ).fetchone()
        return _stored(row) if row else None

    def head(self) -> tuple[int, str]:
        """The last seq and hash, or (0, genesis) for an empty log."""
        row = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def append(self, events: Iterable[NewEvent]) -> list[StoredEvent]:
        """Appends events in one transaction; each must be the next version of its stream."""
        events = list(events)
        if not events:
            return []
        with self.transaction():
            seq, prev_hash = self.head()
            expected: dict[str, int] = {}
            recorded_at = clock.stored(clock.now())
            stored = []
            for event in events:
                if event.stream not in expected:
                    expected[event.stream] = self.stream_version(event.stream) + 1
                if event.version != expected[event.stream]:
                    raise StreamConflict(
                        f"stream {event.stream!r} expected version {expected[event.stream]}, got {event.version}"
                    )
                expected[event.stream] += 1
                seq += 1
                row = {
                    "seq": seq, "event_id": uuid.uuid4().hex, "stream": event.stream,
                    "version": event.version, "type": event.type, "schema_version": event.schema_version,
                    "occurred_at": event.occurred_at, "recorded_at": recorded_at,
                    "actor_id": event.actor_id, "data": event.data,
                }
                row["prev_hash"] = prev_hash
                row["hash"] = prev_hash = chain_hash(prev_hash, row)
                stored.append(StoredEvent(**row))
            self._insert(stored)
        return stored

    def import_events(self, events: Iterable[StoredEvent]) -> None:
        """Appends events exactly as given (ids, times, hashes): for import of an export."""
        with self.transaction():
            self._insert(list(events))

    def _insert(self, events: list[StoredEvent]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        try:
            self.conn.executemany(
                f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                [tuple(row[c] for c in COLUMNS) for row in map(StoredEvent.row, events)],
            )
        except sqlite3.IntegrityError as error:
            raise StreamConflict(str(error)) from error

    def read(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[StoredEvent]:
        """Events with seq > after (and <= until), in order, fetched in batches: constant memory."""
        position = after
        while True:
            bound = "" if until is None else f" AND seq <= {int(until)}"
            rows = self.conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM events WHERE seq > ?{bound} ORDER BY seq LIMIT ?",
                (position, batch),
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield _stored(row)
            position = rows[-1][0]

    def read_stream(self, stream: str) -> Iterator[StoredEvent]:
        rows = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE stream = ? ORDER BY version", (stream,)
        )
        for row in rows:
            yield _stored(row)

    def count(self) -> int:
        return self.head()[0]

    def verify_chain(self, events: Iterable[StoredEvent] | None = None, progress=None) -> int:
        """Walks the chain from the start; raises ChainBroken at the first bad event. Returns the count."""
        prev_hash, expected_seq = GENESIS_HASH, 1
        for event in self.read() if events is None else events:
            check_link(event, expected_seq, prev_hash)
            prev_hash, expected_seq = event.hash, expected_seq + 1
            if progress:
                progress(1)
        return expected_seq - 1


def check_link(event: StoredEvent, expected_seq: int, prev_hash: str) -> None:
    if event.seq != expected_seq:
        raise ChainBroken(event.seq, f"expected seq {expected_seq}")
    if event.prev_hash != prev_hash:
        raise ChainBroken(event.seq, "prev_hash does not match the previous event's hash")
    if chain_hash(prev_hash, vars(event)) != event.hash:
        raise ChainBroken(event.seq, "content does not match its hash")


def _stored(row) -> StoredEvent:
    values = dict(zip(COLUMNS, row))
    values["data"] = json.loads(values["data"])
    return StoredEvent(**values)
