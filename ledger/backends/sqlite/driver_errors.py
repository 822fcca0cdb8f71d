"""sqlite3's errors turned into the ledger's own at the backend's edge, their messages kept."""

import contextlib
import sqlite3
from collections.abc import Iterator

from ledger.errors import DatabaseError, DatabaseLocked, DatabaseUnavailable, IntegrityViolation

BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
DRIVER_ERROR = sqlite3.Error  # the base of the driver's errors, which `neutral` takes


def neutral(error: sqlite3.Error) -> DatabaseError:
    """The ledger's error for a driver's."""
    if isinstance(error, sqlite3.IntegrityError):
        return IntegrityViolation(str(error))
    if getattr(error, "sqlite_errorcode", 0) & 0xFF in BUSY_CODES:  # extended codes keep the primary in the low byte
        return DatabaseLocked(str(error))
    return DatabaseUnavailable(str(error))


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raises the ledger's error for any sqlite3 error raised inside; usable as a decorator too."""
    try:
        yield
    except sqlite3.Error as error:
        raise neutral(error) from error
