"""The ledger's database: the log and its views together, written in one transaction."""

from collections.abc import Callable

from projections import runner

from . import checkpointer, clock, idempotency, periods, tokens
from .store import EventStore, NewEvent, StoredEvent, StreamConflict, connect

# How often a write whose streams moved while it was deciding is decided again.
WRITE_ATTEMPTS = 5


class Ledger:
    """One SQLite database holding the event log and the projections folded from it."""

    def __init__(self, path: str, committer=None, background_checkpoints: bool = False, sync_on_commit: bool = True,
                 read_only: bool = False):
        """`committer`, a GroupCommitter of this process, lets concurrent writes share commits.

        With `background_checkpoints`, a thread copies the log into the database file instead of
        the commits of this connection (ledger/checkpointer.py): for a process that writes a lot.
        Without `sync_on_commit`, the caller makes each commit durable (see store.connect).
        A `read_only` ledger only reads (ledger/opening.py says who opens one).
        """
        self.path = path
        self.committer = committer
        self.conn = connect(path, sync_on_commit, read_only)
        self.store = EventStore(self.conn)
        self.db = self.store.db
        self.checkpointer = None
        if background_checkpoints and self.store.lock_path:
            self.conn.execute(f"PRAGMA wal_autocheckpoint={checkpointer.WRITER_CHECKPOINT_PAGES}")
            self.checkpointer = checkpointer.Checkpointer(path, self.store.lock_path)
        # The latest billing month known to be started, so most writes skip the rollover query.
        self._started_through = None

    def init(self) -> None:
        """Creates the log and the views if missing, and brings the views up to the log."""
        with self.store.transaction():
            self.store.create_schema()
            outdated = runner.create(self.db)
            idempotency.create(self.db)
            tokens.create(self.db)
            if outdated:  # a view of an older release's shape: folded again from the log, once
                runner.rebuild(self.store)
        runner.catch_up(self.store)

    def write(self, decide: Callable[[], list[NewEvent]], key: idempotency.Key | None = None) -> list[StoredEvent]:
        """Decides, then appends and projects in one write transaction: all of it lands, or none.

        Deciding reads the views without holding the write lock, so that concurrent writers
        wait only for each other's appends; the streams' expected versions catch a decision
        that another writer overtook, and it is made again. The last attempt decides under the
        lock, where nobody can overtake it, so a busy stream never fails a write. A month the
        clock has entered is started first, so that every write sees its carried values. An
        idempotency `key` is checked and remembered in the same transaction (raising Replayed
        or KeyReused). With a committer, the append shares a commit with other threads' writes.
        """
        attempt = 1
        while True:
            last = attempt == WRITE_ATTEMPTS
            try:
                if self.committer and not last and not self.conn.in_transaction:
                    return self.committer.submit(decide(), key)
                decided = None if last else decide()
                with self.store.transaction():
                    if last:
                        decided = decide()
                    if key:
                        idempotency.check(self.conn, key)
                        idempotency.remember(self.conn, key)
                    return self.append_rollover() + self.append(decided)
            except StreamConflict:
                if last or self.conn.in_transaction:
                    raise
                attempt += 1

    def roll_periods(self) -> list[StoredEvent]:
        """Starts every billing month the clock has entered that the log has not started yet."""
        with self.store.transaction():
            return self.append_rollover()

    def append_rollover(self) -> list[StoredEvent]:
        """Inside a write transaction: starts the billing months the clock has entered."""
        return self.append(self._rollover_due())

    def _rollover_due(self) -> list[NewEvent]:
        current = clock.billing_period(clock.now())
        if self._started_through is not None and self._started_through >= current:
            return []
        self._started_through = periods.started_through(self.store)
        due = periods.due(self._started_through, clock.now())
        if due:
            idempotency.purge(self.conn)
        return due

    def append(self, decided: list[NewEvent]) -> list[StoredEvent]:
        """Inside a write transaction: appends decided events and folds them into the views."""
        stored = self.store.append(decided)
        runner.apply(self.conn, stored, just_appended=True)
        return stored

    def close(self) -> None:
        if self.checkpointer:
            self.checkpointer.stop()
        self.store.close()
        self.conn.close()
