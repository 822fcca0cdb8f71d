"""The SQLite backend: the contracts' suites run on it, and what is SQLite's own (lock files, driver errors)."""

import os
import sqlite3
import threading

import pytest

from ledger.backends import backend_for
from ledger.backends.sqlite import SQLiteBackend, connection, driver_errors, locks
from ledger.backends.sqlite.store import SQLiteEventStore
from ledger.database import Ledger
from ledger.errors import DatabaseLocked, DatabaseUnavailable, IntegrityViolation, UnsupportedDatabase

from .contracts.lease import LeaseContract
from .contracts.store import EventStoreContract, SQLHooks, event
from .contracts.views import ViewsContract


def opened_store(path: str) -> SQLiteEventStore:
    store = SQLiteEventStore(connection.connect(path))
    store.create_schema()
    return store


def closed(store: SQLiteEventStore) -> None:
    store.close()
    store.conn.close()


class TestSQLiteEventStore(SQLHooks, EventStoreContract):
    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "events.db")

    @pytest.fixture
    def store(self, path):
        opened = opened_store(path)
        yield opened
        closed(opened)

    @pytest.fixture
    def second_store(self, store, path):
        second = SQLiteEventStore(connection.connect(path))
        yield second
        closed(second)

    @pytest.fixture
    def another_log(self, tmp_path):
        opened = opened_store(str(tmp_path / "another.db"))
        yield opened
        closed(opened)

    def drop_guards(self, store):
        for (name,) in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            store.conn.execute(f"DROP TRIGGER {name}")


class TestSQLiteViews(ViewsContract):
    @pytest.fixture
    def ledger(self, tmp_path, now):
        opened = Ledger(str(tmp_path / "ledger.db"))
        opened.init()
        yield opened
        opened.close()


class TestSQLiteLease(LeaseContract):
    @pytest.fixture
    def backend(self, tmp_path):
        return SQLiteBackend(str(tmp_path / "ledger.db"))


def test_another_connections_append_wakes_the_holder_before_it_looks_on_its_own(tmp_path, monkeypatch):
    """The projector's holder hears another process's append (here another connection's: the OS
    tells no difference) through its watch on the log, not by looking at the log every few ms."""
    monkeypatch.setattr(locks, "WATCHED_LOOK_SECONDS", 60)
    path = str(tmp_path / "ledger.db")
    holder, appender = locks.Lease(path), opened_store(path)
    try:
        assert holder.acquire()
        assert holder.watch is not None  # inotify: Linux, where the tests run
        heard = []
        waiting = threading.Thread(target=lambda: heard.append(holder.await_appends(threading.Event())))
        waiting.start()
        appender.append([event("elsewhere", 1)])
        waiting.join(timeout=30)
        assert not waiting.is_alive()  # woken by the append, long before its own look
        assert heard == [False]  # not its own process's append: the holder looks at the log before folding
        monkeypatch.setattr(locks, "WATCHED_LOOK_SECONDS", 0.05)
        assert not holder.await_appends(threading.Event())  # nothing written since: the wait runs out
    finally:
        holder.release()
        closed(appender)
    assert holder.watch is None


def test_without_a_watch_on_the_log_the_holder_looks_every_few_milliseconds(tmp_path, monkeypatch):
    monkeypatch.setattr(locks.LogWatch, "open", classmethod(lambda cls, database_file: None))  # a system without inotify
    holder, appended = locks.Lease(str(tmp_path / "ledger.db")), threading.Event()
    assert holder.acquire()
    appended.set()
    assert holder.await_appends(appended)
    assert not holder.await_appends(appended)  # nothing appended: after LOOK_SECONDS it looks itself
    holder.release()


def test_a_path_is_a_sqlite_ledger_and_a_url_of_no_backend_is_refused():
    assert isinstance(backend_for("ledger.db"), SQLiteBackend)
    assert isinstance(backend_for("/var/lib/ledger/ledger.db"), SQLiteBackend)
    with pytest.raises(UnsupportedDatabase, match="URL"):
        backend_for("mysql://ledger@localhost/ledger")


def test_driver_errors_become_the_ledgers_own_with_their_messages(tmp_path):
    store = opened_store(str(tmp_path / "events.db"))
    store.append([event("a", 1)])
    with pytest.raises(IntegrityViolation, match="append-only") as refused:
        with driver_errors.translated():
            store.conn.execute("DELETE FROM events")
    assert isinstance(refused.value.__cause__, sqlite3.IntegrityError)
    with pytest.raises(DatabaseUnavailable, match="no such table"), store.transaction():
        store.conn.execute("SELECT * FROM missing")
    assert store.count() == 1
    closed(store)


def test_a_busy_database_is_locked_and_a_damaged_one_unavailable(tmp_path):
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert type(driver_errors.neutral(busy)) is DatabaseLocked
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"not a database, only bytes" * 100)
    with pytest.raises(DatabaseUnavailable, match="not a database"):
        SQLiteBackend(str(damaged)).connect()


def test_the_writer_lock_file_is_opened_once_for_many_writes(tmp_path, monkeypatch):
    path = str(tmp_path / "events.db")
    store = opened_store(path)
    opened, real_open = [], os.open
    monkeypatch.setattr(locks.os, "open", lambda name, *args: opened.append(name) or real_open(name, *args))
    for version in range(1, 6):
        store.append([event("s", version)])
    closed(store)
    assert opened == [f"{os.path.realpath(path)}.writer-lock"]


def test_a_forked_process_queues_for_the_writer_lock_it_inherited(tmp_path, monkeypatch):
    """A lock belongs to the open file: with the parent's file, the child would be let in."""
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_SECONDS", 0.2)
    store = opened_store(str(tmp_path / "events.db"))
    store.append([event("s", 1)])  # the lock file is open
    with store.writer_lock.held():
        child = os.fork()
        if child == 0:
            try:
                with store.writer_lock.held():
                    os._exit(1)  # let in while the parent holds it
            except DatabaseLocked:
                os._exit(0)
        _, status = os.waitpid(child, 0)
    closed(store)
    assert os.waitstatus_to_exitcode(status) == 0
