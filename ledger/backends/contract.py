"""What a storage backend provides besides its event store: reaching the database, the projector's
lease, and background upkeep. The write side and the views see a backend only through these."""

import abc
import enum
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from ledger.log.store import EventStore


class Cursor(Protocol):
    """The rows of one statement, as a DB-API cursor gives them."""

    def fetchone(self) -> Sequence[Any] | None: ...

    def fetchall(self) -> list[Sequence[Any]]: ...

    def __iter__(self) -> Iterator[Sequence[Any]]: ...


class Connection(Protocol):
    """A connection to the ledger's database as the write side and the views use it: SQL with `?` parameters."""

    in_transaction: bool

    def execute(self, sql: str, parameters: Sequence[Any] | dict = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> Cursor: ...

    def close(self) -> None: ...


class ProjectorLease(Protocol):
    """At most one holder folds a database's views at a time; a holder that dies loses the lease."""

    held: bool

    def acquire(self) -> bool:
        """Takes the lease if nobody holds it; True when this object holds it (already, or now)."""

    def await_appends(self, appended: threading.Event) -> bool:
        """The holder's wait for something to fold: True once an append may wait to be folded, False
        when a short wait ended first (the holder then looks at the log itself). This process's
        writers set `appended`, which the wait clears; the backend says how it hears of other processes'."""

    def release(self) -> None: ...


class BackgroundWork(Protocol):
    """Upkeep a backend runs beside a busy writer, e.g. copying a write-ahead log into the database."""

    def stop(self) -> None: ...


class Writes(enum.Enum):
    """What a connection's write transactions write: a backend may let a connection that only appends
    and one that only folds write side by side (on SQLite the views are a file of their own)."""

    EVERYTHING = "everything"
    LOG = "log"  # a group committer: appends, never folds
    VIEWS = "views"  # the projector: folds, never appends


class Backend(abc.ABC):
    """One ledger's database, named by the `--db` value that chose the backend."""

    # Whether the database lets concurrent commits share a flush of its log by itself, as a
    # server does (a commit that waits for the disk finds it flushed by another's): a process
    # then appends each write in a transaction of its own, with no group committer of its own.
    commits_share_flushes = False

    def __init__(self, location: str):
        self.location = location

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether there is a database at the location (a ledger or not)."""

    @abc.abstractmethod
    def writable(self) -> bool:
        """Whether this process may write the database."""

    @abc.abstractmethod
    def check_ledger(self, empty_allowed: bool) -> None:
        """Raises NotALedger unless the database holds an event log (or is empty, when `empty_allowed`); reads only."""

    @abc.abstractmethod
    def connect(self, sync_on_commit: bool = True, read_only: bool = False,
                writes: Writes = Writes.EVERYTHING) -> Connection:
        """A connection in autocommit mode. Without `sync_on_commit`, its commits need the store's
        `sync_log` to be durable; a `read_only` one never writes the database; one that `writes`
        only the log or only the views may fail to write the other."""

    @abc.abstractmethod
    def event_store(self, conn: Connection, writes: Writes = Writes.EVERYTHING) -> EventStore:
        """The event store over a connection of this backend's, made with the same `writes`."""

    @abc.abstractmethod
    def projector_lease(self, store: EventStore) -> ProjectorLease | None:
        """The lease of the store's database; None when no other connection can see the database."""

    @abc.abstractmethod
    def background_work(self, store: EventStore) -> BackgroundWork | None:
        """Starts the upkeep that a process writing a lot runs beside its writers; None when there is none."""
