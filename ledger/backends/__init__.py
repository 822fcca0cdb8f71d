"""The storage backends a ledger can live in, and the one a `--db` value chooses."""

import re

from ..errors import UnsupportedDatabase
from .contract import Backend, BackgroundWork, Connection, Cursor, ProjectorLease
from .sqlite import SQLiteBackend

__all__ = ["Backend", "BackgroundWork", "Connection", "Cursor", "ProjectorLease", "backend_for"]

# A URL's scheme, as in postgresql://host/db; a file path has none.
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def backend_for(db: str) -> Backend:
    """The backend of a `--db` value: a file path is a SQLite ledger; a URL names a server none serves yet."""
    if URL_SCHEME.match(db):
        raise UnsupportedDatabase("no backend for a database named by URL; give the path of a SQLite file")
    return SQLiteBackend(db)
