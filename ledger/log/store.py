"""The event store's contract: what the ledger asks of the log, whichever backend keeps it.

The rules that make it a ledger's log (versions per stream, read-sets, the hash chain) are kept
here once; a backend provides the storage: transactions, the rows, and queries over them.
"""

import abc
import contextlib
import os
import time
import uuid
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING

from ledger.errors import StreamConflict
from ledger.log.hashing import GENESIS_HASH, check_row, row_hash
from ledger.log.records import COLUMNS, Decision, NewEvent, StoredEvent, stored_event
from ledger.rules import clock

if TYPE_CHECKING:  # the backends' contract names the store, so only a type checker reads this one
    from ledger.backends.contract import Connection

READ_BATCH = 2000


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): new ids land at the end of the event_id index.

    A random uuid4 put every event on a random page of that index, one more page to write.
    """
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 12 bits of rand_a, then 62 of rand_b
    return uuid.UUID(int=millis << 80 | 0x7 << 76 | (rand >> 68) << 64 | 0b10 << 62 | rand & (1 << 62) - 1)


class EventStore(abc.ABC):
    """Appends events with optimistic concurrency per stream; reads them back in order."""

    conn: "Connection"  # the backend's connection, which the views share
    horizon: int | None = None  # set by deciding_at

    @abc.abstractmethod
    def create_schema(self) -> None:
        """Creates the log, refusing any UPDATE or DELETE of its events, unless it exists."""

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction, taken up front so that deciding and appending are serialised;
        inside one already, it joins it. Writers of every process and connection queue for it."""

    def fold_transaction(self) -> contextlib.AbstractContextManager[None]:
        """A write transaction that folds events into the views: folders queue for one another, and
        one reads the views' checkpoint only once the folder before it has committed. Inside a
        write transaction already, it joins it, still queueing for the folders. A backend whose
        appenders need not wait for folds gives folders a lock of their own; by default it is a
        `transaction`, which queues them with the writers."""
        return self.transaction()

    def batched(self) -> contextlib.AbstractContextManager:
        """A block whose statements that are not read back travel with the next one that is (or
        the block's end) in one round trip to the server, their errors raised there; by default
        each statement runs on its own (an embedded database has no round trips to save)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def savepoint(self) -> contextlib.AbstractContextManager[None]:
        """Inside a write transaction: a part of it that, when it fails, is undone alone (and raises)."""

    @abc.abstractmethod
    def prepare_group_commits(self) -> None:
        """Readies the connection for transactions of many savepoints each, as the group committer makes."""

    def prepare_folding(self) -> None:
        """Readies the connection for folding many events into the views (a rebuild, the projector):
        e.g. a page cache that holds the views' indexes. Nothing to do for a backend that needs nothing."""

    def renew_if_lost(self) -> bool:
        """Whether the connection's session was lost (a server restarted, a network failed) and is
        renewed: raises DatabaseUnavailable when no new one can be had. A transaction open in the
        lost one is gone. False for a backend whose sessions cannot be lost (a file)."""
        return False

    @abc.abstractmethod
    def forgo_durability(self) -> None:
        """Lets commits skip waiting for the disk altogether: for a scratch database thrown away afterwards."""

    @abc.abstractmethod
    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """A read transaction: every read inside it sees the database as of its first read. Where the
        views are kept apart from the log (SQLite), each is seen as of its own first read: read the
        views first, and the log then holds every event they folded."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases what the store holds of its own; the connection is its owner's to close."""

    @abc.abstractmethod
    def sync_log(self) -> None:
        """Makes every commit so far, of any connection, durable: for writers that commit without waiting for the disk."""

    @abc.abstractmethod
    def stream_versions(self, streams: Iterable[str]) -> dict[str, int]:
        """The version of each stream's last event (0 for a stream with none).

        While a decision reads the views (`horizon` set to their position), a version is that of the
        stream's last event the views have folded: a stream that moved past them fails the decision's
        append with StreamConflict, and the decision is made again on views that have caught up.
        """

    @abc.abstractmethod
    def last_event(self, stream: str) -> StoredEvent | None:
        """The last event of a stream; None for a stream with none."""

    @abc.abstractmethod
    def last_of_greatest_stream(self, prefix: str) -> StoredEvent | None:
        """The last event of the greatest stream name starting with `prefix`, e.g. the latest `period/YYYY-MM`."""

    @abc.abstractmethod
    def head(self) -> tuple[int, str]:
        """The last seq and hash, or (0, GENESIS_HASH) for an empty log."""

    @abc.abstractmethod
    def event_hash(self, seq: int) -> str | None:
        """The hash of event `seq`; None when the log holds no such event."""

    @abc.abstractmethod
    def insert_rows(self, rows: list[tuple]) -> None:
        """Inside a write transaction: stores rows (values in COLUMNS order, data as canonical text);
        StreamConflict when a stream version or an event id is already taken."""

    @abc.abstractmethod
    def read_rows(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[tuple]:
        """As `read`, but each event as its stored row (values in COLUMNS order, data as stored text)."""

    @abc.abstractmethod
    def read_stream(self, stream: str) -> Iterator[StoredEvent]:
        """One stream's events, in version order."""

    @abc.abstractmethod
    def read_streams(self, prefix: str) -> Iterator[StoredEvent]:
        """Events of every stream whose name starts with `prefix`, in seq order."""

    @abc.abstractmethod
    def seq_at(self, recorded_at: str) -> int:
        """The last seq of the log as it stood at a stored time: just before the first event recorded after it."""

    def tip(self, streams: Iterable[str]) -> tuple[int, str, dict[str, int]]:
        """The head (seq, hash) and the versions of `streams`: what an append reads under the lock.
        A backend whose statements are round trips reads them in one."""
        return (*self.head(), self.stream_versions(streams))

    @abc.abstractmethod
    def head_seq_with(self, select: str, unwaited: Collection[str] = ()) -> tuple[int, tuple]:
        """The head's seq and the one row of `select` (a parameterless SELECT of the caller's, over
        the same connection), as of one moment: one statement, where statements are round trips.

        With `unwaited` event types, the head is the seq of the last event past the row's
        `position` column whose type is none of them (that position when there is none, 0 for a
        NULL one): what a reader that need not wait for those types waits for."""

    @abc.abstractmethod
    def head_with(self, select: str, unwaited: Collection[str] = ()) -> tuple[str, list]:
        """The statement of `head_seq_with` and its parameters, its head in a column named `head`:
        for a caller that reads it within a statement of its own."""

    def stream_version(self, stream: str) -> int:
        """The version of a stream's last event; 0 for a stream with none."""
        return self.stream_versions([stream])[stream]

    @contextlib.contextmanager
    def deciding_at(self, position: int) -> Iterator[None]:
        """Versions read inside are as of `position`, the views' position a decision reads them at."""
        self.horizon = position
        try:
            yield
        finally:
            self.horizon = None

    def append(self, events: Iterable[NewEvent]) -> list[StoredEvent]:
        """Appends events in one transaction; each must be the next version of its stream, and the
        streams a Decision read must be at the versions it read."""
        read = events.read if isinstance(events, Decision) else {}
        events = list(events)
        if not events:
            self._check_unmoved(read)
            return []
        with self.transaction():
            seq, prev_hash, current = self.tip([*(e.stream for e in events), *read])
            self._check_unmoved(read, current)
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
            self.insert_rows(rows)
        return stored

    def _check_unmoved(self, read: dict[str, int], current: dict[str, int] | None = None) -> None:
        """StreamConflict when a stream read has moved from the version read: from its `current` one,
        read here unless given. Outside a write transaction this is a check as of now: a decision that
        appends nothing needs no lock."""
        if not read:
            return
        if current is None:
            current = self.stream_versions(read)
        moved = sorted(stream for stream, version in read.items() if current[stream] != version)
        if moved:
            raise StreamConflict(f"streams {moved} moved since the decision read them")

    def import_events(self, events: Iterable[StoredEvent]) -> None:
        """Appends events exactly as given (ids, times, hashes): for import of an export."""
        with self.transaction():
            self.insert_rows([tuple(row[c] for c in COLUMNS) for row in map(StoredEvent.row, events)])

    def read(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[StoredEvent]:
        """Events with seq > after (and <= until), in order, fetched in batches: constant memory."""
        return map(stored_event, self.read_rows(after, until, batch))

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
