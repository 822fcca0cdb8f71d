"""The event store's queries that every SQL backend writes alike: an `events` table, `?` parameters."""

import contextlib
from collections.abc import Callable, Collection, Iterator

from ledger.errors import StreamConflict
from ledger.log.hashing import GENESIS_HASH
from ledger.log.records import COLUMNS, StoredEvent, stored_event
from ledger.log.store import READ_BATCH, EventStore

SELECTED = ", ".join(COLUMNS)
# The last version of the stream that the expression {stream} names, of its events with {bound}
# (a condition on `e.seq`, or nothing): one entry read off the end of the stream's index. As an
# aggregate over several streams (MAX ... GROUP BY), every version of each was read, and a usage
# record's stream gains one at each report that changes it, a user's share's too.
STREAM_VERSION = "SELECT e.version FROM events e WHERE e.stream = {stream}{bound} ORDER BY e.version DESC LIMIT 1"


class SQLEventStore(EventStore):
    """An event store over a SQL database's `events` table. A backend's subclass names its driver's
    errors (`translated`, `duplicate`) and how it begins a snapshot, and provides its transactions,
    its schema, and what it queries its own way."""

    translated: Callable[[], contextlib.AbstractContextManager[None]]  # the backend's error translation
    duplicate: type[Exception]  # the driver's error for a stream version or event id already taken
    begin_snapshot: str  # the statement that opens a read transaction

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """As the contract says; its BEGIN travels with the first read."""
        if self.conn.in_transaction:
            yield
            return
        with self.translated(), self.batched():
            self.conn.execute(self.begin_snapshot)
            try:
                yield
            finally:
                self.conn.execute("COMMIT")

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """As the contract says. What the part writes without reading back (an append's rows) may
        travel with its RELEASE (`batched`): a write that failed is raised at the part's end, still inside it."""
        with self.translated():
            try:
                with self.batched():
                    self.conn.execute("SAVEPOINT part")
                    yield
                    self.conn.execute("RELEASE part")
            except BaseException as error:
                try:
                    self.conn.execute("ROLLBACK TO part")
                    self.conn.execute("RELEASE part")
                except Exception:  # no savepoint to go back to: its own statement failed, as `error` says
                    raise error from None
                if isinstance(error, self.duplicate):  # rows batched: checked by the server at the part's end
                    raise StreamConflict(str(error)) from error
                raise

    def last_event(self, stream: str) -> StoredEvent | None:
        with self.translated():
            row = self.conn.execute(
                f"SELECT {SELECTED} FROM events WHERE stream = ? ORDER BY version DESC LIMIT 1", (stream,)
            ).fetchone()
        return stored_event(row) if row else None

    def last_of_greatest_stream(self, prefix: str) -> StoredEvent | None:
        with self.translated():
            row = self.conn.execute(
                f"SELECT {SELECTED} FROM events WHERE stream >= ? AND stream < ? ORDER BY stream DESC, version DESC LIMIT 1",
                (prefix, prefix + "\uffff"),
            ).fetchone()
        return stored_event(row) if row else None

    def head(self) -> tuple[int, str]:
        with self.translated():
            row = self.conn.execute("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def head_with(self, select: str, unwaited: Collection[str] = ()) -> tuple[str, list]:
        types = list(unwaited)
        if types:  # read backwards from the head down to the position at most: as far as the views trail
            head = (f"coalesce((SELECT MAX(seq) FROM events WHERE seq > coalesce(given.position, 0)"
                    f" AND type NOT IN ({', '.join('?' for _ in types)})), given.position, 0)")
        else:
            head = "coalesce((SELECT seq FROM events ORDER BY seq DESC LIMIT 1), 0)"
        return f"SELECT {head} AS head, given.* FROM ({select}) given", types

    def head_seq_with(self, select: str, unwaited: Collection[str] = ()) -> tuple[int, tuple]:
        statement, parameters = self.head_with(select, unwaited)
        with self.translated():
            row = self.conn.execute(statement, parameters).fetchone()
        return row[0], tuple(row[1:])

    def event_hash(self, seq: int) -> str | None:
        with self.translated():
            row = self.conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def insert_rows(self, rows: list[tuple]) -> None:
        placeholders = ", ".join("?" for _ in COLUMNS)
        with self.translated():
            try:
                self.conn.executemany(f"INSERT INTO events ({SELECTED}) VALUES ({placeholders})", rows)
            except self.duplicate as error:
                raise StreamConflict(str(error)) from error

    def read_rows(self, after: int = 0, until: int | None = None, batch: int = READ_BATCH) -> Iterator[tuple]:
        position = after
        bound = "" if until is None else f" AND seq <= {int(until)}"
        while True:
            with self.translated():
                rows = self.conn.execute(
                    f"SELECT {SELECTED} FROM events WHERE seq > ?{bound} ORDER BY seq LIMIT ?", (position, batch)
                ).fetchall()
            yield from rows
            if len(rows) < batch:  # the log's end: asking again would cost a round trip for nothing
                return
            position = rows[-1][0]

    def read_stream(self, stream: str) -> Iterator[StoredEvent]:
        with self.translated():
            yield from map(stored_event, self.conn.execute(
                f"SELECT {SELECTED} FROM events WHERE stream = ? ORDER BY version", (stream,)
            ))

    def read_streams(self, prefix: str) -> Iterator[StoredEvent]:
        with self.translated():
            yield from map(stored_event, self.conn.execute(
                f"SELECT {SELECTED} FROM events WHERE stream >= ? AND stream < ? ORDER BY seq", (prefix, prefix + "\uffff")
            ))

    def seq_at(self, recorded_at: str) -> int:
        with self.translated():
            row = self.conn.execute("SELECT MIN(seq) FROM events WHERE recorded_at > ?", (recorded_at,)).fetchone()
        return self.head()[0] if row[0] is None else row[0] - 1
