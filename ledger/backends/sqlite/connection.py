"""Connections to a SQLite ledger: the PRAGMAs every connection sets, and reading one that cannot be written."""

import os
import sqlite3
import urllib.parse

BUSY_TIMEOUT_SECONDS = 60


def durable_commits() -> bool:
    """Whether a commit must reach the disk before it is answered (LEDGER_SYNC=full, the default)."""
    return os.environ.get("LEDGER_SYNC", "full").lower() != "normal"


def connect(path: str, sync_on_commit: bool = True, read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE.

    Without `sync_on_commit`, a commit does not wait for the disk (synchronous=NORMAL, which
    keeps the database consistent through a crash); whoever commits on it then makes the
    commit durable with `EventStore.sync_log` before answering. A `read_only` connection
    never writes the database, and also reads one on storage it cannot write.
    """
    if read_only:
        return sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_SECONDS,
                               isolation_level=None, check_same_thread=False)
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if sync_on_commit and durable_commits() else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def writable(path: str) -> bool:
    """Whether this process may write a file and create files beside it (SQLite's -wal and -shm)."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


def read_only_uri(path: str) -> str:
    """The URI that opens a database for reading only.

    A reader of a write-ahead-logged database keeps its shared index in a -shm file beside it;
    on storage it cannot write, that file cannot be made, so a database without a log of its
    own there is opened as immutable (nothing changes it). One with a log is read through it.
    """
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    if not writable(path) and not os.path.exists(f"{path}-wal"):
        uri += "&immutable=1"
    return uri
