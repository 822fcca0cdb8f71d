"""The ledger's database: the log and its views together, written in one transaction."""

from collections.abc import Callable

from projections import runner

from . import clock, periods
from .store import EventStore, NewEvent, StoredEvent, connect


class Ledger:
    """One SQLite database holding the event log and the projections folded from it."""

    def __init__(self, path: str):
        self.path = path
        self.conn = connect(path)
        self.store = EventStore(self.conn)
        self.db = self.store.db
        # The latest billing month known to be started, so most writes skip the rollover query.
        self._started_through = None

    def init(self) -> None:
        """Creates the log and the views if missing, and brings the views up to the log."""
        with self.store.transaction():
            self.store.create_schema()
            runner.create(self.db)
        runner.catch_up(self.store)

    def write(self, decide: Callable[[], list[NewEvent]]) -> list[StoredEvent]:
        """Decides, appends and projects in one write transaction: all of it lands, or none.

        A month the clock has entered is started first, so that every write sees its carried values.
        """
        with self.store.transaction():
            return self._append(self._rollover_due()) + self._append(decide())

    def roll_periods(self) -> list[StoredEvent]:
        """Starts every billing month the clock has entered that the log has not started yet."""
        with self.store.transaction():
            return self._append(self._rollover_due())

    def _rollover_due(self) -> list[NewEvent]:
        current = clock.billing_period(clock.now())
        if self._started_through is not None and self._started_through >= current:
            return []
        self._started_through = periods.started_through(self.store)
        return periods.due(self._started_through, clock.now())

    def _append(self, decided: list[NewEvent]) -> list[StoredEvent]:
        stored = self.store.append(decided)
        runner.apply(self.conn, stored)
        return stored

    def close(self) -> None:
        self.conn.close()
