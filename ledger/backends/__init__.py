"""The storage backends a ledger can live in, and the one a `--db` value chooses."""

import contextlib
import os
import re
from collections.abc import Iterator

from ledger.backends.contract import Backend, Connection, ProjectorLease, Writes
from ledger.backends.postgres import SCHEMES, PostgresBackend
from ledger.backends.postgres import driver_errors as postgres_errors
from ledger.backends.sqlite import SQLiteBackend
from ledger.backends.sqlite import driver_errors as sqlite_errors
from ledger.errors import UnsupportedDatabase

__all__ = ["Backend", "Connection", "ProjectorLease", "Writes", "backend_for", "independent_of_cwd", "neutral",
           "translated"]

# A URL's scheme, as in postgresql://host/db; a file path has none.
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def backend_for(db: str) -> Backend:
    """The backend of a `--db` value: a file path is a SQLite ledger, a postgresql:// URL a PostgreSQL one."""
    if db.startswith(SCHEMES):
        return PostgresBackend(db)
    if URL_SCHEME.match(db):
        raise UnsupportedDatabase(
            "no backend for a database named by this URL; give a postgresql:// URL or the path of a SQLite file")
    return SQLiteBackend(db)


def independent_of_cwd(db: str) -> str:
    """A `--db` value that names the same database from any working directory: a file path made
    absolute, a URL as it is (e.g. for server processes that change directory)."""
    return db if URL_SCHEME.match(db) else os.path.abspath(db)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Raises the ledger's own error for a driver's error of any backend raised inside: for the edges
    where SQL run on a backend's connection past its event store (the views') meets an operator."""
    with sqlite_errors.translated(), postgres_errors.translated():
        yield


def neutral(error: Exception) -> Exception:
    """The ledger's own error for a driver's error of any backend; any other error as it is. For an
    edge that handles errors as they come (a request's), where `translated` costs every call its entry."""
    for driver in (sqlite_errors, postgres_errors):
        if isinstance(error, driver.DRIVER_ERROR):
            return driver.neutral(error)
    return error
