"""psycopg's errors turned into the ledger's own at the backend's edge, their messages kept."""

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg import errors

from ledger.errors import DatabaseError, DatabaseLocked, DatabaseUnavailable, IntegrityViolation, TransactionAborted

DRIVER_ERROR = psycopg.Error  # the base of the driver's errors, which `neutral` takes
# The server aborted one transaction of two that raced: made again, it lands.
RACED = (errors.SerializationFailure, errors.DeadlockDetected)
# A lock not had within the connection's lock_timeout, or a statement past its statement_timeout.
WAITED_TOO_LONG = (errors.LockNotAvailable, errors.QueryCanceled)


def neutral(error: psycopg.Error) -> DatabaseError | TransactionAborted:
    """The ledger's error for a driver's, its message on one line (libpq adds hints on lines of their own)."""
    message = " ".join(str(error).split())
    if isinstance(error, RACED):
        return TransactionAborted(message)
    if isinstance(error, psycopg.IntegrityError):
        return IntegrityViolation(message)
    if isinstance(error, WAITED_TOO_LONG):
        return DatabaseLocked(message)
    return DatabaseUnavailable(message)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raises the ledger's error for any psycopg error raised inside; usable as a decorator too."""
    try:
        yield
    except psycopg.Error as error:
        raise neutral(error) from error
