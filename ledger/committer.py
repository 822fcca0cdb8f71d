"""Group commit: the writes of many threads of one process land in one transaction, and one fsync.

Writers queue for the database's one write lock, and every commit waits for the disk. A thread
that finds the lock free commits every write queued by then, each inside its own savepoint,
so one write that fails (a stream another writer moved, a reused idempotency key) is rolled
back alone. Every write is answered only after the commit that holds it is on disk.

The commit itself does not wait for the disk: it writes the log and gives up the writer lock
at once, and only then does this thread flush the log (`EventStore.sync_log`) and answer its
writes. Writers of other processes thus take the lock while the flush runs, instead of after
it: with the flush inside the lock, writes spent a third of their turn waiting for the disk.

For SQLite: a database server shares its concurrent commits' flushes itself
(Backend.commits_share_flushes), and a process of its ledger appends each write on its own.
"""

import dataclasses
import threading

from ledger.backends import Writes
from ledger.commands import idempotency
from ledger.database import Ledger
from ledger.log.records import NewEvent, StoredEvent


@dataclasses.dataclass
class Submission:
    decided: list[NewEvent]
    key: idempotency.Key | None
    stored: list[StoredEvent] | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommitter:
    """Commits the writes of one process together, on a connection of its own."""

    def __init__(self, path: str):
        # It writes the log alone: on SQLite its commits then go on while the projector folds.
        self.ledger = Ledger(path, background_checkpoints=True, sync_on_commit=False, writes=Writes.LOG)
        self.ledger.store.prepare_group_commits()
        self.queue_lock = threading.Lock()
        self.commit_lock = threading.Lock()
        self.queue: list[Submission] = []

    def submit(self, decided: list[NewEvent], key: idempotency.Key | None = None) -> list[StoredEvent]:
        """Appends `decided` (checking and remembering `key`) in the next group commit."""
        submission = Submission(decided, key)
        with self.queue_lock:
            self.queue.append(submission)
        with self.commit_lock:
            if not submission.done:
                self._commit_queued()
        if submission.error is not None:
            raise submission.error
        return submission.stored

    def _commit_queued(self) -> None:
        ledger, conn = self.ledger, self.ledger.conn
        batch: list[Submission] = []
        try:
            with ledger.store.transaction():
                # Taken once the write lock is ours: what was queued while waiting for it joins this commit.
                batch = self._take_queue()
                ledger.append_rollover()
                for submission in batch:
                    try:
                        with ledger.store.savepoint():
                            if submission.key:
                                idempotency.check(conn, submission.key)
                                idempotency.remember(conn, submission.key)
                            submission.stored = ledger.store.append(submission.decided)
                    except Exception as error:  # noqa: BLE001 - one failed write must not fail the others
                        submission.error, submission.stored = error, None
            ledger.store.sync_log()  # outside the writer lock; a failed flush fails the batch below
        except BaseException as error:  # the commit itself failed: nothing of the batch landed
            batch = batch or self._take_queue()  # the write lock was never ours: fail what waits for it
            for submission in batch:
                submission.error, submission.stored = error, None
            if not isinstance(error, Exception):
                raise
        finally:
            for submission in batch:
                submission.done = True

    def _take_queue(self) -> list[Submission]:
        with self.queue_lock:
            batch, self.queue = self.queue, []
        return batch

    def close(self) -> None:
        self.ledger.close()
