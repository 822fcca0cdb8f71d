"""The ledger's database: the event log, and the views that the projector folds from it."""

import contextlib
import dataclasses
from collections.abc import Callable, Collection, Iterator
from typing import TypeVar

from ledger import backends
from ledger.backends import Writes
from ledger.commands import idempotency, tokens
from ledger.errors import StreamConflict
from ledger.log.records import NewEvent, StoredEvent
from ledger.rules import clock, periods
from projections import projector, runner, sql

T = TypeVar("T")

# How often a write whose streams moved while it was deciding is decided again.
WRITE_ATTEMPTS = 5


class ArrivalMissed(Exception):
    """A request served on presumed positions (Ledger.presume_arrival) that do not hold: it is served
    again from the positions found (Ledger.found), where the views hold every write acknowledged
    before it arrived."""


@dataclasses.dataclass
class PresumedArrival:
    """The views' positions (runner.positions) that a request is served on before it has read them."""

    positions: tuple[int, int]
    unwaited: tuple[str, ...]
    # Whether the request used an answer kept for the views' position, not only for their rows
    # (api/caching.py): then the presumption holds only at that very position.
    position_read: bool = False

    def holds_at(self, positions: tuple[int, int], strictly: bool = False) -> bool:
        """Whether what the request answered on the presumed positions is true at `positions`, where
        the views hold every event it waits for."""
        return positions[1] == self.positions[1] and (
            positions[0] == self.positions[0] or not (self.position_read or strictly))


class Ledger:
    """One database holding the event log and the projections folded from it, in the backend its path chooses."""

    def __init__(self, path: str, committer=None, background_checkpoints: bool = False, sync_on_commit: bool = True,
                 read_only: bool = False, writes: Writes = Writes.EVERYTHING, projector=None):
        """`committer`, a GroupCommitter of this process, lets concurrent writes share commits.
        With the process's `projector` (projections/projector.py), writes wake it to fold them
        instead of folding them here.

        With `background_checkpoints`, the backend's upkeep runs beside the writers instead of in
        their commits (SQLite's checkpoints, in a thread): for a process that writes a lot.
        Without `sync_on_commit`, the caller makes each commit durable (see Backend.connect).
        A ledger that `writes` only the log (a group committer's) or only the views (a projector's)
        writes them beside the other's writers. A `read_only` ledger only reads (ledger/opening.py
        says who opens one); what it folds into views of its own, it keeps in memory.
        """
        self.path = path
        self.committer, self.projector = committer, projector
        # Writes sent to the database so far: a request that lost its session before sending one may be
        # served again on a new session (api/requests.py), one that lost it while sending one not.
        self.writes_sent = 0
        backend = backends.backend_for(path)
        writes = Writes.VIEWS if read_only else writes
        self.conn = backend.connect(sync_on_commit, read_only, writes)
        self.store = backend.event_store(self.conn, writes)
        self.lease = backend.projector_lease(self.store)
        self.checkpointer = backend.background_work(self.store) if background_checkpoints else None
        # When the month after the latest one known to be started begins: until then, writes skip the rollover query.
        self._next_month_starts = None
        # Set by `arrive`: the views hold every write acknowledged before the caller's request arrived.
        self._arrived = False
        # The views' positions that the last arrival found: a request's own once it has arrived (those
        # it presumes until its first read confirms them, see presume_arrival); and that presumption.
        self.found: tuple[int, int] | None = None
        self.presumed: PresumedArrival | None = None

    def init(self) -> None:
        """Creates the log and the views if missing, and brings the views up to the log."""
        with self.store.transaction():
            self.store.create_schema()
            outdated = runner.create(self.conn)
            idempotency.create(self.conn)
            tokens.create(self.conn)
            # Views of an older release's shape, views of another log, or views just made beside a
            # log that has events (a log copied alone): folded again from the log, at once.
            made_beside_events = runner.position(self.conn) == 0 and self.store.head()[0] > 0
            if outdated or made_beside_events or not runner.of_the_log(self.store):
                runner.rebuild(self.store)
        self.reach_views()

    def reach_views(self, timeout: float | None = None) -> int:
        """Waits until the views have folded every event committed so far (folding them when nobody
        else does); raises projector.ViewsBehind past `timeout` (LEDGER_READ_WAIT seconds by default)."""
        return projector.reach(self.store, self.lease, timeout=timeout)

    def arrive(self, unwaited: Collection[str] = ()) -> tuple[int, int]:
        """A request arrives: the views are brought up to every write acknowledged before it
        (`reach_views`). Its first write decides on them without waiting again: what other
        writers append meanwhile is concurrent with the request, and a decision that a later
        append overtakes fails its own append and is made again (see `write`).

        Events of the `unwaited` types are not waited for: those a request's decisions read only
        through stream versions that their append checks, or not at all. A decision that one of
        them overtook is made again, after waiting for the views to hold it.

        Returns the views' positions (runner.positions) as the request found them once they held what it waits for.
        """
        # Every write acknowledged before the request is in the head: read with the views' positions, in one statement.
        self.presumed = None
        return self._reached(*self.store.head_seq_with(runner.POSITIONS, unwaited))

    def _reached(self, target: int, row: tuple) -> tuple[int, int]:
        """The views' positions once they hold the event at `target`, from their `row` (runner.POSITIONS) as read with it."""
        positions = runner.positions_of(row)
        if positions[0] < target:
            positions = projector.reach_positions(self.store, self.lease, target)
        self._arrived, self.found = True, positions
        return positions

    def presume_arrival(self, unwaited: Collection[str] = ()) -> tuple[int, int]:
        """Arrives as `arrive` does, without a statement of its own: on the positions that the last
        arrival found, which the request's first read confirms by reading its arrival in the same
        statement (`carried_arrival`, `arrived_with`). A server's round trip a request saved.

        Where they do not hold, that read raises ArrivalMissed, and the caller serves the request
        again from the positions found. A request answered without such a read (an error, say)
        confirms its arrival after it (`confirm_arrival`). Without a last arrival, this one arrives.
        """
        if self.found is None:
            return self.arrive(unwaited)
        self.presumed = PresumedArrival(self.found, tuple(unwaited))
        self._arrived = True
        return self.found

    def carried_arrival(self) -> tuple[str, list] | None:
        """While the request's arrival is presumed: a column for the SELECT list of its first read (a
        scalar subquery, and its parameters) that reads the arrival in that statement."""
        if self.presumed is None:
            return None
        statement, parameters = self.store.head_with(runner.POSITIONS, self.presumed.unwaited)
        # As text (rows_as_json): each row of the read carries it, and a driver would parse the JSON of every one.
        row = sql.dialect(self.conn).rows_as_json.format("arrival.head, arrival.position, arrival.rows_changed_at")
        return f"(SELECT {row} FROM ({statement}) arrival)", parameters

    def arrived_with(self, carried) -> None:
        """The value of the carried column as the read gave it (None when it gave no row): raises
        ArrivalMissed unless the presumed positions hold there."""
        presumed, self.presumed = self.presumed, None
        if carried is None:  # the arrival read after the read: the views must not have moved since the presumed position
            target, row = self.store.head_seq_with(runner.POSITIONS, presumed.unwaited)
        else:
            (target, *row), = sql.json_rows(carried)
        trailing = runner.positions_of(row)[0] < target  # the read was made on views that lack an awaited event
        positions = self._reached(target, row)
        if trailing or not presumed.holds_at(positions, strictly=carried is None):
            raise ArrivalMissed(f"the views are at {positions}, not at the presumed {presumed.positions}")

    def confirm_arrival(self) -> bool:
        """After a request served on a presumed arrival: whether its answer holds (its arrival
        confirmed by a read, or now); if not, it is served again on the positions found."""
        presumed = self.presumed
        return presumed is None or presumed.holds_at(self.arrive(presumed.unwaited), strictly=True)

    def note_position_read(self) -> None:
        """The request used an answer kept for the views' position: a presumed arrival holds only there."""
        if self.presumed is not None:
            self.presumed.position_read = True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """A write transaction whose views hold every event: nobody appends while it lasts. What it
        appends is folded once it has committed."""
        outermost = not self.conn.in_transaction
        with self.store.transaction():
            runner.catch_up(self.store)
            yield
        if outermost:
            self._written()

    def write(self, decide: Callable[[], list[NewEvent]], key: idempotency.Key | None = None,
              single_read: bool = False) -> list[StoredEvent]:
        """Decides on views that hold every event committed before the call (or, after `arrive`,
        before the caller's request arrived), then appends: all of it lands, or none.

        Deciding reads the views without holding the write lock, so that concurrent writers wait
        only for each other's appends; the versions of the streams it reads are those the views
        hold, so a decision that another writer overtook fails its append, and it is made again.
        The last attempt decides under the lock, where nobody can overtake it, so a busy stream
        never fails a write. A month the clock has entered is started first, so that a decision
        sees its carried values. An idempotency `key` is checked and remembered in the append's
        transaction (raising Replayed or KeyReused). With a committer, the append shares a
        commit with other threads' writes. The process's projector, if given, is woken to fold
        the write; without one, the views are folded right after it (`_written`).
        A decision that makes a `single_read` of the views, in one statement, is a snapshot of its
        own: it reads no positions and opens no transaction (a server's round trips saved).
        """
        arrived, self._arrived = self._arrived, False
        if self._month_entered():
            self.roll_periods()
            arrived = False  # the decision must see the months just started
        attempt = 1
        while True:
            last = attempt == WRITE_ATTEMPTS or self.conn.in_transaction
            try:
                if last:
                    with self.locked():
                        return self._append(self._decide(decide, single_read), key)
                if attempt > 1 or not arrived:  # views that trail what overtook the last decision, or the caller
                    self.reach_views()
                decided = self._decide(decide, single_read)
                if self.committer:
                    self.writes_sent += 1
                    stored = self.committer.submit(decided, key)
                else:
                    stored = self._append(decided, key)
                if stored:  # a report that changes nothing leaves nothing to fold
                    self._written()
                return stored
            except StreamConflict:
                if last:
                    raise
                attempt += 1

    def _decide(self, decide: Callable[[], list[NewEvent]], single_read: bool = False) -> list[NewEvent]:
        return decide() if single_read else self.read_for_decision(decide)

    def read_for_decision(self, read: Callable[[], T]) -> T:
        """`read()` on one snapshot of the views, reading stream versions as the views hold them: a
        decision's reads, where they are not a single read."""
        with self.store.snapshot():
            with self.store.deciding_at(runner.position(self.conn)):
                return read()

    def _append(self, decided: list[NewEvent], key: idempotency.Key | None) -> list[StoredEvent]:
        """In one write transaction: the key checked and remembered, due months started, then the
        decision. The decision alone is a transaction of its own (on PostgreSQL, one statement)."""
        self.writes_sent += 1
        if key is None and not self._month_entered():
            return self.store.append(decided)
        with self.store.transaction():
            if key:
                idempotency.check(self.conn, key)
                idempotency.remember(self.conn, key)
            return self.append_rollover() + self.store.append(decided)

    def _written(self) -> None:
        """After a write: the process's projector folds it, or this ledger does if nobody else does."""
        if self.projector:
            self.projector.wake()
        else:
            projector.fold_after_write(self.store, self.lease)

    def roll_periods(self) -> list[StoredEvent]:
        """Starts every billing month the clock has entered that the log has not started yet."""
        self.writes_sent += 1
        with self.store.transaction():
            stored = self.append_rollover()
        self._written()
        return stored

    def append_rollover(self) -> list[StoredEvent]:
        """Inside a write transaction: starts the billing months the clock has entered."""
        return self.store.append(self._rollover_due())

    def _month_entered(self) -> bool:
        """Whether the clock may have entered a billing month this ledger has not seen started."""
        return self._next_month_starts is None or clock.now() >= self._next_month_starts

    def _rollover_due(self) -> list[NewEvent]:
        if not self._month_entered():
            return []
        started_through = periods.started_through(self.store)
        self._next_month_starts = periods.start_of_month_after(started_through) if started_through else None
        due = periods.due(started_through, clock.now())
        if due:
            idempotency.purge(self.conn)
        return due

    def renew_if_lost(self) -> bool:
        """Whether the database session was lost and is renewed (EventStore.renew_if_lost)."""
        return self.store.renew_if_lost()

    def close(self) -> None:
        if self.checkpointer:
            self.checkpointer.stop()
        if self.lease:
            self.lease.release()
        self.store.close()
        self.conn.close()
