"""The ledger's database: the log and its views together, written in one transaction."""

from collections.abc import Callable

from projections import runner

from .store import EventStore, NewEvent, StoredEvent, connect


class Ledger:
    """One SQLite database holding the event log and the projections folded from it."""

    def __init__(self, path: str):
        self.path = path
        self.conn = connect(path)
        self.store = EventStore(self.conn)
        self.db = self.store.db

    def init(self) -> None:
        """Creates the log and the views if missing, and brings the views up to the log."""
        with self.store.transaction():
            self.store.create_schema()
            runner.create(self.db)
        runner.catch_up(self.store)

    def write(self, decide: Callable[[], list[NewEvent]]) -> list[StoredEvent]:
        """Decides, appends and projects in one write transaction: all of it lands, or none."""
        with self.store.transaction():
            stored = self.store.append(decide())
            runner.apply(self.conn, stored)
        return stored

    def close(self) -> None:
        self.conn.close()
