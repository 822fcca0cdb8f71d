"""The ledger's storage errors, whatever the backend: a backend raises these, never its driver's own."""


class StoreError(Exception):
    """Base of the event store's errors."""


class StreamConflict(StoreError):
    """An append expected a stream version that another writer has already taken."""


class TransactionAborted(StreamConflict):
    """The database aborted a write that raced another (a serialization failure, a deadlock).

    A conflict like a stream moved under a decision: the write is decided and appended again.
    """


class ChainBroken(StoreError):
    """An event's hash does not follow from its content and its predecessor."""

    def __init__(self, seq: int, reason: str):
        super().__init__(f"hash chain broken at seq {seq}: {reason}")
        self.seq = seq


class NotALedger(StoreError):
    """A database that holds no event log (or is no database at all)."""


class UnsupportedDatabase(StoreError):
    """A `--db` value that names a kind of database no backend serves."""


class DatabaseError(StoreError):
    """The database refused or failed an operation: a driver's error, as the backend translated it."""


class DatabaseUnavailable(DatabaseError):
    """The database cannot be read or written as asked: damaged, read-only, out of space, failing I/O."""


class DatabaseLocked(DatabaseUnavailable):
    """Another writer kept the database past the busy timeout."""


class IntegrityViolation(DatabaseError):
    """A rule the database enforces was broken (a constraint, the log's refusal of UPDATE and DELETE)."""
