"""Connections to a SQLite ledger: its two files, the PRAGMAs every connection sets, and reading one that cannot be written.

A ledger is two databases: the log's file (the events, and what is written with them) and the
views' file beside it, `<file>.views`, which every connection attaches as the schema `views`.
Apart, a fold does not hold the log's writer lock, and a commit's flush does not write the
views' pages (docs/write-path.md). The views are a function of the log: a missing views file is
folded again from it.
"""

import os
import sqlite3
import urllib.parse

from ledger.backends.contract import Writes

BUSY_TIMEOUT_SECONDS = 60
VIEWS = "views"  # the schema name of the attached views


def views_file(path: str) -> str:
    return f"{path}.{VIEWS}"


def ledger_files(path: str) -> list[str]:
    """The files a copy of the ledger at `path` takes (their logs checkpointed into them first);
    without the views' file, a copy folds its views again from the log when first opened."""
    return [path, views_file(path)]


def durable_commits() -> bool:
    """Whether a commit must reach the disk before it is answered (LEDGER_SYNC=full, the default)."""
    return os.environ.get("LEDGER_SYNC", "full").lower() != "normal"


def connect(path: str, sync_on_commit: bool = True, read_only: bool = False,
            writes: Writes = Writes.EVERYTHING) -> sqlite3.Connection:
    """A connection in autocommit mode, the views attached: transactions are opened explicitly
    with BEGIN IMMEDIATE, which takes the write lock of each file the connection may write. One
    that `writes` the log alone attaches the views read-only, and one that writes the views alone
    opens the log read-only, so that an append and a fold go on side by side.

    Without `sync_on_commit`, a commit does not wait for the disk (synchronous=NORMAL, which
    keeps the database consistent through a crash); whoever commits on it then makes the
    commit durable with `EventStore.sync_log` before answering. The views never wait for the
    disk: a fold lost to a power cut is folded again. A `read_only` connection never writes a
    file, and also reads a ledger on storage it cannot write; without a views file beside the
    log (a copy of the log alone) it attaches empty views in memory, for the reader to fold.
    """
    if path == ":memory:":
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"ATTACH DATABASE ':memory:' AS {VIEWS}")
        return conn
    views = views_file(path)
    if read_only:
        conn = _connect(read_only_uri(path))
        conn.execute(f"ATTACH DATABASE ? AS {VIEWS}", (read_only_uri(views) if os.path.exists(views) else ":memory:",))
        return conn
    conn = _connect(file_uri(path, "ro" if writes is Writes.VIEWS else "rwc"))
    if writes is not Writes.VIEWS:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if sync_on_commit and durable_commits() else 'NORMAL'}")
    # Views made by an earlier release live in the log's file: the first writer's init makes the file.
    views_read_only = writes is Writes.LOG and os.path.exists(views)
    conn.execute(f"ATTACH DATABASE ? AS {VIEWS}", (file_uri(views, "ro" if views_read_only else "rwc"),))
    if not views_read_only:
        conn.execute(f"PRAGMA {VIEWS}.journal_mode=WAL")
        conn.execute(f"PRAGMA {VIEWS}.synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _connect(uri: str) -> sqlite3.Connection:
    return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False)


def file_uri(path: str, mode: str) -> str:
    return f"file:{urllib.parse.quote(os.path.abspath(path))}?mode={mode}"


def writable(path: str) -> bool:
    """Whether this process may write a file and create files beside it (SQLite's -wal and -shm)."""
    return os.access(path, os.W_OK) and os.access(os.path.dirname(os.path.abspath(path)), os.W_OK)


def read_only_uri(path: str) -> str:
    """The URI that opens a database for reading only.

    A reader of a write-ahead-logged database keeps its shared index in a -shm file beside it;
    on storage it cannot write, that file cannot be made, so a database without a log of its
    own there is opened as immutable (nothing changes it). One with a log is read through it.
    """
    uri = file_uri(path, "ro")
    if not writable(path) and not os.path.exists(f"{path}-wal"):
        uri += "&immutable=1"
    return uri
