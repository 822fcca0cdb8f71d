"""The append-only, hash-chained event log: the only module that knows the events table."""

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import os
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring

import sqlite_utils

from . import clock

GENESIS_HASH = "0" * 64
BUSY_TIMEOUT_SECONDS = 60
LOCK_POLL_SECONDS = 0.0005
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

    @functools.cached_property
    def data_text(self) -> str:
        """The data as stored: its canonical JSON. Encoded once, and by `events.new` when the
        event is decided, so that appending, inside the writer lock, only hashes and inserts it."""
        return canonical(self.data)


class Decision(list):
    """Events decided together, and `read`: the versions of streams the decision depends on without
    appending to them. Appending fails with StreamConflict when one of those has moved since."""

    def __init__(self, decided: Iterable[NewEvent] = (), read: dict[str, int] | None = None):
        super().__init__(decided)
        self.read = dict(read or {})


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
        """Every column, as stored: data as its canonical JSON text."""
        # vars, not dataclasses.asdict: asdict deep-copies `data`, which is then replaced anyway.
        return {**vars(self), "data": canonical(self.data)}


COLUMNS = [f.name for f in dataclasses.fields(StoredEvent)]


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new ids land at the end of the event_id index.

    A random uuid4 put every event on a random page of that index, one more page to write.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 12 bits of rand_a, then 62 of rand_b
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & (1 << 62) - 1)


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev_hash: str, row: dict) -> str:
    """SHA-256 of the previous hash and every other column of the event."""
    content = {name: row[name] for name in COLUMNS if name not in ("prev_hash", "hash")}
    return hashlib.sha256((prev_hash + canonical(content)).encode()).hexdigest()


def durable_commits() -> bool:
    """Whether a commit must reach the disk before it is answered (LEDGER_SYNC=full, the default)."""
    return os.environ.get("LEDGER_SYNC", "full").lower() != "normal"


def connect(path: str, sync_on_commit: bool = True, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.

    Without `sync_on_commit`, a commit does not wait for the disk (synchronous=NORMAL, which
    keeps the database consistent through a crash); whoever commits on it then makes the
    commit durable with `EventStore.sync_log` before answering. A `read_only` connection
    never writes the database, and also reads one on storage it cannot write.
    """
    if read_only:
        return sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_SECONDS,
                               isolation_level=None, check_same_thread=False)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if sync_on_commit and durable_commits() else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def writable(path: str) -> bool:
    """Whether this process may write a file and create files beside it (SQLite's -wal and -shm)."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


def read_only_uri(path: str) -> str:
    """The URI that opens a database for reading only.

    A reader of a write-ahead-logged database keeps its shared index in a -shm file beside it;
    on storage it cannot write, that file cannot be made, so a database without a log of its
    own there is opened as immutable (nothing changes it). One with a log is read through it.
    """
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    if not writable(path) and not os.path.exists(f"{path}-wal"):
        uri += "&immutable=1"
    return uri


class WriterLock:
    """The OS lock beside a database file that its writers queue on.

    SQLite's own busy handler polls in growing sleeps (up to 100 ms), so under contention the
    database stands idle while writers sleep; polling the flock every LOCK_POLL_SECONDS hands it
    over almost at once. Like SQLite's busy timeout, waiting gives up after BUSY_TIMEOUT_SECONDS.
    The OS drops the lock of a process that dies.

    The lock file stays open from one turn to the next instead of being opened for every write.
    A lock belongs to an open file, so a process that inherited it by fork opens its own.
    """

    def __init__(self, path: str):
        self.path = path
        self.descriptor: int | None = None
        self.pid: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self.pid != os.getpid():
            self.close()
            self.descriptor, self.pid = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid()
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError("database is locked: no writer lock within the busy timeout") from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(self.descriptor, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)  # an inherited copy: closing it leaves the parent's lock alone
        self.descriptor = self.pid = None


class Lease:
    """The projector's lease beside a database file: at most one holder folds its views at a time.

    An OS lock taken without waiting. The OS drops it when its holder dies (kill -9 included),
    so that another process takes over; the holder writes its pid into the file, for operators.
    """

    def __init__(self, path: str):
        self.path = path
        self.descriptor: int | None = None
        self.pid: int | None = None
        self.held = False

    def acquire(self) -> bool:
        """Takes the lease if nobody holds it; True when this object holds it (already, or now)."""
        if self.pid != os.getpid():
            if self.descriptor is not None:  # inherited by fork: closing it leaves the parent's lease alone
                os.close(self.descriptor)
            self.descriptor, self.pid, self.held = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600), os.getpid(), False
        if self.held:
            return True
        try:
            fcntl.flock(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.descriptor, 0)
        os.pwrite(self.descriptor, f"{os.getpid()}\n".encode(), 0)
        self.held = True
        return True

    def release(self) -> None:
        if self.descriptor is not None and self.pid == os.getpid():
            if self.held:
                fcntl.flock(self.descriptor, fcntl.LOCK_UN)
            os.close(self.descriptor)
        self.descriptor = self.pid = None
        self.held = False


class EventStore:
    """Appends events with optimistic concurrency per stream; reads them back in order."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        database_file = conn.execute("PRAGMA database_list").fetchone()[2]
        self.lock_path = f"{database_file}.writer-lock" if database_file else None
        self.lease_path = f"{database_file}.projector-lease" if database_file else None
        # An in-memory database has a single connection: nothing to queue for.
        self.writer_lock = WriterLock(self.lock_path) if database_file else None
        self.log_path = f"{database_file}-wal" if database_file else None
        self.horizon: int | None = None  # see stream_versions

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
        with self.writer_lock.held() if self.writer_lock else contextlib.nullcontext():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside it sees the database as of its first read."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self.conn.execute("COMMIT")

    def close(self) -> None:
        """Closes the writer lock's file; the connection is its owner's to close."""
        if self.writer_lock:
            self.writer_lock.close()

    def sync_log(self) -> None:
        """Flushes the write-ahead log to disk: every commit so far, of any connection, is durable after it.

        The group committer commits without waiting for the disk and calls this once it has
        given up the writer lock, so that the next writer goes on while this one's flush runs.
        """
        if self.log_path is None or not durable_commits():
            return
        try:
            descriptor = os.open(self.log_path, os.O_RDONLY)
        except FileNotFoundError:  # the last connection to close copied the log into the (synced) database
            return
        try:
            os.fdatasync(descriptor)  # as SQLite's own log syncs on Linux
        finally:
            os.close(descriptor)

    def stream_version(self, stream: str) -> int:
        """The version of a stream's last event; 0 for a stream with none."""
        return self.stream_versions([stream])[stream]

    def stream_versions(self, streams: Iterable[str]) -> dict[str, int]:
        """The version of each stream's last event (0 for a stream with none), a query per 500 streams.

        While a decision reads the views (`horizon` set to their position), a version is that of the
        stream's last event the views have folded: a stream that moved past them fails the decision's
        append with StreamConflict, and the decision is made again on views that have caught up.
        """
        streams = list(dict.fromkeys(streams))
        versions = dict.fromkeys(streams, 0)
        bound = "" if self.horizon is None else f" AND seq <= {int(self.horizon)}"
        for start in range(0, len(streams), 500):
            chunk = streams[start:start + 500]
            versions.update(self.conn.execute(
                f"SELECT stream, MAX(version) FROM events WHERE stream IN ({', '.join('?' * len(chunk))}){bound}"
                " GROUP BY stream",
                chunk,
            ))
        return versions

    @contextlib.contextmanager
    def deciding_at(self, position: int) -> Iterator[None]:
        """Versions read inside are as of `position`, the views' position a decision reads them at."""
        self.horizon = position
        try:
            yield
        finally:
            self.horizon = None

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

    def event_hash(self, seq: int) -> str | None:
        """The hash of event `seq`; None when the log holds no such event."""
        row = self.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def append(self, events: Iterable[NewEvent]) -> list[StoredEvent]:
        """Appends events in one transaction; each must be the next version of its stream, and the
        streams a Decision read must be at the versions it read."""
        read = events.read if isinstance(events, Decision) else {}
        events = list(events)
        if not events:
            self._check_unmoved(read)
            return []
        with self.transaction():
            seq, prev_hash = self.head()
            current = self._check_unmoved(read, also=[e.stream for e in events])
            expected = {stream: version + 1 for stream, version in current.items()}
            recorded_at = clock.stored(clock.now())
            stored, rows = [], []
            for event in events:
                if event.version != expected[event.stream]:
                    raise StreamConflict(
                        f"stream {event.stream!r} expected version {expected[event.stream]}, got {event.version}"
                    )
                expected[event.stream] += 1
                seq += 1
                # The row as stored, data already as its canonical text: hashed and inserted as it is.
                row = (seq, uuid7().hex, event.stream, event.version, event.type, event.schema_version,
                       event.occurred_at, recorded_at, event.actor_id, event.data_text, prev_hash)
                hash_ = prev_hash = row_hash(prev_hash, row, event.data)
                rows.append((*row, hash_))
                stored.append(StoredEvent(*row[:9], event.data, row[10], hash_))
            self._insert_rows(rows)
        return stored

    def _check_unmoved(self, read: dict[str, int], also: Iterable[str] = ()) -> dict[str, int]:
        """The current versions of the streams read and `also`; StreamConflict when a stream read has moved.
        Outside a write transaction this is a check as of now: a decision that appends nothing needs no lock."""
        if not read and not also:
            return {}
        current = self.stream_versions([*also, *read])
        moved = sorted(stream for stream, version in read.items() if current[stream] != version)
        if moved:
            raise StreamConflict(f"streams {moved} moved since the decision read them")
        return current

    def import_events(self, events: Iterable[StoredEvent]) -> None:
        """Appends events exactly as given (ids, times, hashes): for import of an export."""
        with self.transaction():
            self._insert(list(events))

    def _insert(self, events: list[StoredEvent]) -> None:
        self._insert_rows([tuple(row[c] for c in COLUMNS) for row in map(StoredEvent.row, events)])

    def _insert_rows(self, rows: list[tuple]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        try:
            self.conn.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows)
        except sqlite3.IntegrityError as error:
            raise StreamConflict(str(error)) from error

    def read(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[StoredEvent]:
        """Events with seq > after (and <= until), in order, fetched in batches: constant memory."""
        return map(_stored, self.read_rows(after, until, batch))

    def read_rows(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[tuple]:
        """As `read`, but each event as its stored row (values in COLUMNS order, data as stored text)."""
        position = after
        while True:
            bound = "" if until is None else f" AND seq <= {int(until)}"
            rows = self.conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM events WHERE seq > ?{bound} ORDER BY seq LIMIT ?",
                (position, batch),
            ).fetchall()
            if not rows:
                return
            yield from rows
            position = rows[-1][0]

    def read_stream(self, stream: str) -> Iterator[StoredEvent]:
        rows = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE stream = ? ORDER BY version", (stream,)
        )
        for row in rows:
            yield _stored(row)

    def read_streams(self, prefix: str) -> Iterator[StoredEvent]:
        """Events of every stream whose name starts with `prefix`, in seq order."""
        rows = self.conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM events WHERE stream >= ? AND stream < ? ORDER BY seq",
            (prefix, prefix + "\uffff"),
        )
        for row in rows:
            yield _stored(row)

    def seq_at(self, recorded_at: str) -> int:
        """The last seq of the log as it stood at a stored time: just before the first event recorded after it."""
        row = self.conn.execute("SELECT MIN(seq) FROM events WHERE recorded_at > ?", (recorded_at,)).fetchone()
        return self.head()[0] if row[0] is None else row[0] - 1

    def count(self) -> int:
        return self.head()[0]

    def verify_chain(self, events: Iterable[StoredEvent] | None = None, progress=None) -> int:
        """Walks the chain from the start; raises ChainBroken at the first bad event. Returns the count.

        `progress(n)` is told of every READ_BATCH events checked, and of the rest at the end.
        """
        prev_hash, expected_seq = GENESIS_HASH, 1
        rows = self.read_rows() if events is None else (tuple(e.row()[c] for c in COLUMNS) for e in events)
        for row in rows:
            check_row(row, expected_seq, prev_hash)
            prev_hash, expected_seq = row[-1], expected_seq + 1
            if progress and expected_seq % READ_BATCH == 1:
                progress(READ_BATCH)
        if progress:
            progress((expected_seq - 1) % READ_BATCH)
        return expected_seq - 1


def check_link(event: StoredEvent, expected_seq: int, prev_hash: str) -> None:
    if event.seq != expected_seq:
        raise ChainBroken(event.seq, f"expected seq {expected_seq}")
    if event.prev_hash != prev_hash:
        raise ChainBroken(event.seq, "prev_hash does not match the previous event's hash")
    if chain_hash(prev_hash, vars(event)) != event.hash:
        raise ChainBroken(event.seq, "content does not match its hash")


def check_row(row: tuple, expected_seq: int, prev_hash: str) -> None:
    """check_link for a row as stored (see `read_rows`), parsing its data only when the fast check fails."""
    try:
        if row[0] == expected_seq and row[-2] == prev_hash and _stored_row_hash(prev_hash, row) == row[-1]:
            return
    except TypeError:  # a column holding an unexpected type: the definition judges it
        pass
    try:
        event = _stored(row)
    except ValueError:
        raise ChainBroken(row[0], "data is not JSON") from None
    check_link(event, expected_seq, prev_hash)


def row_hash(prev_hash: str, row: tuple, data: dict) -> str:
    """chain_hash of a row about to be stored (see `read_rows`; `data` is its data parsed)."""
    seq, version, schema_version, actor_id = row[0], row[3], row[5], row[8]
    if type(seq) is type(version) is type(schema_version) is int and (actor_id is None or type(actor_id) is int):
        with contextlib.suppress(TypeError):
            return _stored_row_hash(prev_hash, row)
    # A column of another type (a bool is not written as an int in JSON): the definition decides.
    return chain_hash(prev_hash, {**dict(zip(COLUMNS, row)), "data": data})


def _stored_row_hash(prev_hash: str, row: tuple) -> str:
    """chain_hash of a stored row, with its data text spliced in unparsed: several times faster.

    The store writes data only as canonical(data), so for an intact row this is exactly the
    defined content; a row it does not match is judged by chain_hash itself.
    """
    seq, event_id, stream, version, type_, schema_version, occurred_at, recorded_at, actor_id, data = row[:10]
    string = encode_basestring  # canonical() of a str; raises TypeError for anything else
    text = (
        f'{{"actor_id":{"null" if actor_id is None else actor_id},"data":{data},"event_id":{string(event_id)},'
        f'"occurred_at":{string(occurred_at)},"recorded_at":{string(recorded_at)},'
        f'"schema_version":{schema_version},"seq":{seq},"stream":{string(stream)},"type":{string(type_)},'
        f'"version":{version}}}'
    )
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def canonical_row(row: tuple) -> str:
    """An event as export writes it, from its stored row (see `read_rows`): canonical JSON of every
    column, `data` as the object it holds, i.e. canonical(StoredEvent.row() | {"data": data}).

    Written out by hand because the JSON encoder would be most of an export's time: the data text,
    which the store writes only as canonical(data), is spliced in as it is. A column holding an
    unexpected type leaves it to the encoder.
    """
    seq, event_id, stream, version, type_, schema_version, occurred_at, recorded_at, actor_id, data, prev_hash, hash_ = row
    string, integer = encode_basestring, int.__repr__  # each raises TypeError for any other type
    try:
        if type(data) is not str:
            raise TypeError("data is not text")
        return (
            f'{{"actor_id":{"null" if actor_id is None else integer(actor_id)},"data":{data},'
            f'"event_id":{string(event_id)},"hash":{string(hash_)},"occurred_at":{string(occurred_at)},'
            f'"prev_hash":{string(prev_hash)},"recorded_at":{string(recorded_at)},'
            f'"schema_version":{integer(schema_version)},"seq":{integer(seq)},"stream":{string(stream)},'
            f'"type":{string(type_)},"version":{integer(version)}}}'
        )
    except TypeError:
        return canonical(dict(zip(COLUMNS, row)) | {"data": _exported_data(data)})


def _exported_data(data):
    """Stored data as export writes it: the object it holds; text that holds none, as that text."""
    try:
        return json.loads(data)
    except (TypeError, ValueError):
        return data


def _stored(row) -> StoredEvent:
    values = dict(zip(COLUMNS, row))
    values["data"] = json.loads(values["data"])
    return StoredEvent(**values)
