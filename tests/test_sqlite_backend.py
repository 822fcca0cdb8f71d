"""The SQLite backend: the contracts' suites run on it, and what is SQLite's own (lock files, driver errors)."""

import json
import os
import shutil
import sqlite3
import threading

import pytest

from ledger.backends import Writes, backend_for
from ledger.cli import load_catalog
from ledger.commands import usage
from ledger.backends.sqlite import SQLiteBackend, connection, driver_errors, locks
from ledger.backends.sqlite.store import SQLiteEventStore
from ledger.database import Ledger
from ledger.errors import DatabaseLocked, DatabaseUnavailable, IntegrityViolation, UnsupportedDatabase
from ledger.rules.access import Caller
from projections import usages

from .contracts.lease import LeaseContract
from .contracts.store import EventStoreContract, SQLHooks, event
from .conftest import sqlite_work
from .contracts.views import ViewsContract
from .world import RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)


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


def test_the_writer_lock_files_are_opened_once_for_many_writes(tmp_path, monkeypatch):
    path = str(tmp_path / "events.db")
    store = opened_store(path)  # a connection that writes both files: it queues for both locks
    opened, real_open = [], os.open
    monkeypatch.setattr(locks.os, "open", lambda name, *args: opened.append(name) or real_open(name, *args))
    for version in range(1, 6):
        store.append([event("s", version)])
    closed(store)
    assert opened == [f"{os.path.realpath(path)}.writer-lock", f"{os.path.realpath(path)}.views-lock"]


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


def test_a_fold_goes_on_while_a_group_committer_appends(tmp_path, monkeypatch):
    """The views are a file of their own: the projector's fold (a connection writing the views
    alone) holds neither the log's writer lock nor SQLite's, so a group committer's append (a
    connection writing the log alone) commits while the fold is still open."""
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_SECONDS", 1)  # read at each wait, by the locks and SQLite alike
    path = str(tmp_path / "ledger.db")
    Ledger(path).init()
    folder = SQLiteEventStore(connection.connect(path, writes=Writes.VIEWS), Writes.VIEWS)
    appender = SQLiteEventStore(connection.connect(path, writes=Writes.LOG), Writes.LOG)
    both = SQLiteEventStore(connection.connect(path))
    try:
        with folder.fold_transaction():
            folder.conn.execute("UPDATE projection_checkpoints SET rows_changed_at = rows_changed_at")
            appender.append([event("elsewhere", 1)])  # would wait for the fold, and time out, on one file
            assert appender.head()[0] == 1
            with pytest.raises(DatabaseLocked):  # a connection that writes both files waits for the fold
                with both.transaction():
                    pass
        with pytest.raises(DatabaseUnavailable, match="readonly"):  # each writes its own file alone
            with appender.transaction():
                appender.conn.execute("UPDATE projection_checkpoints SET position = position")
    finally:
        for store in (folder, appender, both):
            closed(store)


def record_usages(path: str) -> list[tuple]:
    ledger = Ledger(path)
    try:
        return [(r["uuid"], r["usage"]) for r in usages.records(ledger.conn, None, {}, [], usages.EVERY)]
    finally:
        ledger.close()


@pytest.fixture
def reported(db_path):
    """The test ledger with two reports, folded."""
    ledger = Ledger(db_path)
    for amount in ("1.00", "2.50"):
        usage.set_usage(ledger, STAFF, usage.SetUsage([usage.UsageItem("cpu", amount)], resource_uuid=RESOURCE))
    ledger.reach_views()
    ledger.close()
    return db_path


def test_views_an_earlier_release_kept_in_the_logs_file_are_folded_into_their_own(reported):
    before = record_usages(reported)
    conn = sqlite3.connect(reported)  # as an earlier release left it: stale views in the log's file
    conn.execute("CREATE TABLE component_usages (uuid TEXT, usage TEXT)")
    conn.execute("INSERT INTO component_usages VALUES ('stale', '9.99')")
    conn.execute("CREATE TABLE projection_checkpoints (name TEXT, position INTEGER, rows_changed_at INTEGER)")
    conn.commit()
    conn.close()
    ledger = Ledger(reported)
    ledger.init()
    tables = {name for (name,) in ledger.conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'")}
    ledger.close()
    assert tables == {"events", "idempotency_keys", "ledger_keys"}
    assert record_usages(reported) == before


def test_views_beside_another_log_are_folded_again_from_this_one(reported, tmp_path, catalog, now):
    other = str(tmp_path / "other" / "ledger.db")
    os.mkdir(os.path.dirname(other))
    ledger = Ledger(other)
    ledger.init()
    load_catalog(ledger, json.dumps(catalog))
    usage.set_usage(ledger, STAFF, usage.SetUsage([usage.UsageItem("cpu", "7.00")], resource_uuid=RESOURCE))
    ledger.close()
    assert record_usages(other) != record_usages(reported)
    expected = record_usages(reported)
    for suffix in ("", "-wal", "-shm"):  # the log of one ledger copied beside the views of the other
        if os.path.exists(reported + suffix):
            shutil.copyfile(reported + suffix, other + suffix)
        elif os.path.exists(other + suffix):
            os.remove(other + suffix)
    ledger = Ledger(other)
    ledger.init()
    ledger.close()
    assert record_usages(other) == expected


def test_a_log_copied_without_its_views_file_gets_them_folded_again(reported, tmp_path):
    copy = str(tmp_path / "copy" / "ledger.db")
    os.mkdir(os.path.dirname(copy))
    source = sqlite3.connect(reported)
    target = sqlite3.connect(copy)
    source.backup(target)  # the log's file alone, as one backs up one file
    source.close()
    target.close()
    ledger = Ledger(copy)
    ledger.init()
    ledger.close()
    assert os.path.exists(f"{copy}.views")
    assert record_usages(copy) == record_usages(reported)


def test_reading_a_streams_version_reads_one_entry_of_it_however_many_it_has(tmp_path):
    """A usage record's stream gains a version at each report that changes it: about 1,440 a month
    for a record reported every half hour. Every append reads its streams' versions under the
    writer lock, and a report's decision reads them too; an aggregate over every version of three
    such streams took 0.46 ms, and grew through the month."""
    store = opened_store(str(tmp_path / "events.db"))
    try:
        store.append([event(f"short/{n}", 1) for n in range(3)] + [event(f"long/{n}", 1) for n in range(3)])
        for version in range(2, 1001):
            store.append([event(f"long/{n}", version) for n in range(3)])

        def work(streams, horizon=None) -> int:
            found = []
            if horizon is None:
                steps = sqlite_work(store.conn, lambda: found.append(store.stream_versions(streams)))
            else:
                with store.deciding_at(horizon):
                    steps = sqlite_work(store.conn, lambda: found.append(store.stream_versions(streams)))
            assert set(found[0]) == set(streams)
            return steps

        short, long = [f"short/{n}" for n in range(3)], [f"long/{n}" for n in range(3)]
        assert store.stream_versions(long) == dict.fromkeys(long, 1000)
        head = store.head()[0]  # the views' position, a decision's horizon, is at the head or near it
        assert work(long) <= work(short) + 1 and work(long, head - 3) <= work(short, head - 3) + 1
        with store.deciding_at(9):  # the long streams' second versions are seqs 7 to 9
            assert store.stream_versions([*long, "none"]) == {**dict.fromkeys(long, 2), "none": 0}
    finally:
        closed(store)
