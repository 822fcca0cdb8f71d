"""Opening a ledger database in one of three modes, so that a mistyped path never becomes a new ledger.

Commands that make a ledger (init, demo, catalog load, import) open it with CREATE; commands
that change an existing one with WRITE; commands that only read it with READ, which also reads
a copy on storage that cannot be written (an auditor's backup).
"""

import contextlib
import enum
from collections.abc import Iterator

from ledger.backends import backend_for, translated
from ledger.database import Ledger
from ledger.errors import DatabaseError, IntegrityViolation, NotALedger, UnsupportedDatabase
from projections import runner, schema


class Mode(enum.Enum):
    CREATE = "create"  # a missing database is created; an empty file becomes a ledger
    WRITE = "write"  # an existing ledger, which the command changes
    READ = "read"  # an existing ledger, only read: nothing is written, not even a view's catch-up


class LedgerUnusable(Exception):
    """A path that cannot be used as a ledger in the mode asked; the message is one line naming it."""


def open_ledger(path: str, mode: Mode) -> Ledger:
    """The ledger at `path`, opened as `mode` asks; raises LedgerUnusable, having created and changed nothing."""
    with translated_errors(path):
        backend = backend_for(path)
        exists = backend.exists()
        if not exists and mode is not Mode.CREATE:
            raise LedgerUnusable(f"{path}: no such ledger (nothing created; `ledger init` creates one)")
        if exists:
            backend.check_ledger(empty_allowed=mode is Mode.CREATE)
    if mode is not Mode.READ and exists and not backend.writable():
        raise LedgerUnusable(f"{path}: read-only, and this command writes to the ledger")
    with translated_errors(path):
        ledger = Ledger(path, read_only=mode is Mode.READ)
        if mode is Mode.READ:
            return with_views(ledger)
        try:
            ledger.init()
        except BaseException:
            ledger.close()
            raise
    return ledger


def with_views(ledger: Ledger) -> Ledger:
    """`ledger`, opened to read, with views: a copy of a SQLite ledger's log without its views file
    beside it (the backup of one file) has its views folded from the log in memory, for this
    reader alone. Nothing is written to the copy."""
    if not schema.columns(ledger.conn, schema.CHECKPOINTS.name):
        try:
            runner.create(ledger.conn)
            runner.rebuild(ledger.store)
        except BaseException:
            ledger.close()
            raise
    return ledger


def views_current(ledger: Ledger, path: str) -> Ledger:
    """`ledger`, opened to read, once its views are known to hold its whole log; LedgerUnusable otherwise.

    A writing process brings the views up itself; a reader of a copy cannot, and a copy taken while a
    server ran may hold events its projector had not folded yet: such a copy is refused, not misread.
    """
    position, head = runner.position(ledger.conn), ledger.store.head()[0]
    if position < head:
        ledger.close()
        raise LedgerUnusable(
            f"{path}: its views stand at seq {position}, its log at seq {head}; open it once with a writing"
            " command (e.g. `ledger rebuild`) on a writable copy to fold the rest"
        )
    return ledger


@contextlib.contextmanager
def translated_errors(path: str) -> Iterator[None]:
    """Turns the database's own errors (a read-only file, a damaged one, a full disk), and a path that
    names no ledger or a database no backend serves, into LedgerUnusable."""
    try:
        with translated():
            yield
    except IntegrityViolation:  # a broken rule of the ledger's own, not the operator's mistake
        raise
    except (DatabaseError, NotALedger, UnsupportedDatabase) as error:
        raise LedgerUnusable(f"{path}: {error}") from None
    except PermissionError as error:  # e.g. the writer lock beside a database in a read-only directory
        raise LedgerUnusable(f"{path}: {error.strerror}: {error.filename}") from None
