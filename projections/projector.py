"""The projector: folds the log's new events into the views, in order, in batches, in transactions of its own.

Writes only append (ledger/database.py), so the views trail the log by the events not folded yet.
Whoever holds the database's projector lease folds; `ledger serve` runs a `Projector` thread in each
worker process, and the one that takes the lease keeps it while its process lives. When the holder
dies, the lease is free again and another process's thread takes it over.

A read, or a decision that reads the views, first notes the log's head and waits until the views
have reached it (`reach`), folding itself when the lease is free: a CLI command, an application
without a projector thread, or a moment between a holder's death and the takeover. It waits at
most READ_WAIT_SECONDS (LEDGER_READ_WAIT), then gives up with ViewsBehind rather than answer from
views that miss an acknowledged write.
"""

import logging
import os
import threading
import time

from ledger.backends import ProjectorLease
from ledger.errors import StoreError
from ledger.log.store import EventStore

from . import runner

POLL_SECONDS = 0.0005
MAX_POLL_SECONDS = 0.002
# After a fold that folded something, the holder lets appends gather this long before the next:
# a fold's fixed cost (its transaction, the checkpoints, the folders' lock) is then shared
# by the reports of several commits. Under set_usage load without this wait a fold carried 2 reports
# on average, and folding costs a third less per report at 8 than alone (docs/write-path.md). A read
# that waits for a write waits at most this much longer.
FOLD_GAP_SECONDS = 0.006
TAKEOVER_SECONDS = 0.05
CONFIRM_SECONDS = 1.0
RETRY_SECONDS = 1.0
STOP_WAIT_SECONDS = 5.0
log = logging.getLogger(__name__)


def renew_if_lost(store: EventStore) -> None:
    """A new session for a thread that goes on after its own was lost (the server restarted, say);
    none to be had yet is logged, and asked for again at the thread's next failure."""
    try:
        store.renew_if_lost()
    except StoreError as error:
        log.warning("no new database session yet: %s", error)


def read_wait_seconds() -> float:
    return float(os.environ.get("LEDGER_READ_WAIT", "10"))


class ViewsBehind(StoreError):
    """The views did not reach the log's head within the wait: the projector is stuck or overloaded."""

    def __init__(self, target: int, position: int):
        super().__init__(f"the views stand at seq {position}, behind the log's seq {target}")
        self.target, self.position = target, position


def fold(store: EventStore, lease: ProjectorLease | None) -> int | None:
    """Folds every event past the views' position if the lease is free (or held here); None when another holds it."""
    if lease is None:  # a database only this connection sees
        return runner.catch_up(store)
    if lease.held:
        return runner.catch_up(store)
    if not lease.acquire():
        return None
    try:
        return runner.catch_up(store)
    finally:
        lease.release()


def fold_after_write(store: EventStore, lease: ProjectorLease | None) -> None:
    """Folds what a write just appended, if nobody else folds; a failure is logged, not raised: the
    write is in the log, and the next reader folds again (and sees the failure, if it lasts)."""
    try:
        fold(store, lease)
    except Exception:  # noqa: BLE001 - the write stands whatever becomes of its fold
        log.exception("projector: folding after a write failed; the next read folds again")


def reach(store: EventStore, lease: ProjectorLease | None, target: int | None = None, timeout: float | None = None) -> int:
    """Returns once the views have folded the log up to `target` (its head now, by default); returns their position."""
    return reach_positions(store, lease, target, timeout)[0]


def reach_positions(store: EventStore, lease: ProjectorLease | None, target: int | None = None,
                    timeout: float | None = None) -> tuple[int, int]:
    """As `reach`; returns the views' positions (runner.positions) as it found them there.

    Folds itself if the lease is free: at once, and while another holds it, again every
    TAKEOVER_SECONDS (its holder may have died). Between those, it looks at the views' position
    every POLL_SECONDS at first, then less often, up to MAX_POLL_SECONDS: on PostgreSQL each look
    is a statement, and a set_user_usages that waited for the holder's next fold looked (and
    tried the lease) at every turn: 6.6 positions and 2.6 lease tries a request, one by one.
    """
    if target is None:
        target = store.head()[0]
    deadline = time.monotonic() + (read_wait_seconds() if timeout is None else timeout)
    pause, lease_tried = POLL_SECONDS, float("-inf")
    while (positions := runner.positions(store.conn))[0] < target:
        now = time.monotonic()
        if now - lease_tried >= TAKEOVER_SECONDS:
            lease_tried = now
            if fold(store, lease) is not None:
                continue
        if now > deadline:
            raise ViewsBehind(target, positions[0])
        time.sleep(pause)
        pause = min(2 * pause, MAX_POLL_SECONDS)
    return positions


class Projector:
    """A daemon thread that takes a database's projector lease when it is free and folds while it holds it."""

    def __init__(self, store: EventStore, lease: ProjectorLease):
        self.store, self.lease = store, lease
        self.confirmed = 0.0  # when the lease was last confirmed held
        store.prepare_folding()
        self.appended = threading.Event()  # set by this process's writers: fold now
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="projector", daemon=True)
        self.thread.start()

    def wake(self) -> None:
        if not self.appended.is_set():  # setting takes the event's lock and notifies: for nothing when already set
            self.appended.set()

    def _holds_lease(self) -> bool:
        """Whether this thread holds the lease, confirmed with the lease at most every CONFIRM_SECONDS:
        on PostgreSQL confirming is a round trip to the server, and the loop turns at every append.
        Folding a moment longer after losing the lease is harmless: the folders' lock orders folds
        (EventStore.fold_transaction)."""
        now = time.monotonic()
        if self.lease.held and now - self.confirmed < CONFIRM_SECONDS:
            return True
        if self.lease.acquire():
            self.confirmed = now
            return True
        return False

    def _run(self) -> None:
        woken = False
        while not self.stopped.is_set():
            try:
                if not self._holds_lease():
                    self.stopped.wait(TAKEOVER_SECONDS)
                    continue
                # Woken by an append (on PostgreSQL, any node's), there is something to fold; otherwise
                # it looks first, so that an idle holder opens no write transaction.
                if woken or runner.position(self.store.conn) < self.store.head()[0]:
                    if runner.catch_up(self.store):
                        self.stopped.wait(FOLD_GAP_SECONDS)
                woken = self.lease.await_appends(self.appended)
            except Exception:  # noqa: BLE001 - a fold that failed is rolled back whole and tried again
                log.exception("projector: folding (or holding the lease) failed; retrying")
                self.stopped.wait(RETRY_SECONDS)
                renew_if_lost(self.store)

    def stop(self) -> None:
        """Stops folding, once the views hold every event committed so far (this process's last writes
        among them): a server stopped cleanly leaves its views current. The holder folds the rest
        itself; another process waits up to STOP_WAIT_SECONDS for the holder, or takes the lease."""
        self.stopped.set()
        self.appended.set()
        self.thread.join()
        try:
            reach(self.store, self.lease, timeout=STOP_WAIT_SECONDS)
        except Exception:  # noqa: BLE001 - stopping goes on: the next process to fold catches up
            log.exception("projector: the views were not brought up to the log before stopping")
        self.lease.release()
