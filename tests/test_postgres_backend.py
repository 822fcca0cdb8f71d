"""The PostgreSQL backend on a real server: the contracts' suites, and what is PostgreSQL's own (the
append lock's commit order, the database's refusal of changes to the log, the lease's session, driver errors)."""

import os
import threading
import time

import psycopg
import pytest

from ledger.backends import backend_for, translated
from ledger.backends.postgres import PostgresBackend, connection, driver_errors
from ledger.backends.postgres import lease as lease_module
from ledger.backends.postgres.connection import numbered, placeholders
from ledger.backends.postgres import store as store_module
from ledger.backends.postgres.store import PostgresEventStore
from ledger.database import Ledger
from ledger.log.records import Decision
from ledger.errors import (DatabaseLocked, DatabaseUnavailable, IntegrityViolation, NotALedger, StreamConflict,
                           TransactionAborted)

from .contracts.lease import TAKEOVER_SECONDS, LeaseContract, taken_within
from .contracts.store import EventStoreContract, SQLHooks, event
from .contracts.views import ViewsContract
from .postgres import end_sessions


def opened_store(url: str) -> PostgresEventStore:
    store = PostgresEventStore(connection.connect(url))
    store.create_schema()
    return store


def closed(store: PostgresEventStore) -> None:
    store.close()
    store.conn.close()


@pytest.fixture
def store(postgres_url):
    opened = opened_store(postgres_url)
    yield opened
    closed(opened)


class TestPostgresEventStore(SQLHooks, EventStoreContract):
    @pytest.fixture
    def second_store(self, store, postgres_url):
        second = PostgresEventStore(connection.connect(postgres_url))
        yield second
        closed(second)

    @pytest.fixture
    def another_log(self, postgres_server):
        opened = opened_store(postgres_server.new_database())
        yield opened
        closed(opened)

    def drop_guards(self, store):
        for name in ("update", "delete", "truncate"):
            store.conn.execute(f"DROP TRIGGER events_no_{name} ON events")


class TestPostgresViews(ViewsContract):
    @pytest.fixture
    def ledger(self, postgres_url, now):
        opened = Ledger(postgres_url)
        opened.init()
        yield opened
        opened.close()


class TestPostgresLease(LeaseContract):
    @pytest.fixture
    def backend(self, postgres_url):
        return PostgresBackend(postgres_url)


def test_another_nodes_append_wakes_the_holder_at_its_commit_and_one_rolled_back_does_not(postgres_url, monkeypatch):
    monkeypatch.setattr(lease_module, "LOOK_SECONDS", 30)  # far longer than a notification takes
    holder, appender = lease_module.Lease(postgres_url), opened_store(postgres_url)
    try:
        assert holder.acquire()
        other_node = threading.Timer(0.1, lambda: appender.append([event("elsewhere", 1)]))
        other_node.start()
        started = time.monotonic()
        assert holder.await_appends(threading.Event())
        assert time.monotonic() - started < 10
        other_node.join()  # its connection is the appender's below
        monkeypatch.setattr(lease_module, "LOOK_SECONDS", 0.5)
        with pytest.raises(RuntimeError), appender.transaction():
            appender.append([event("elsewhere", 2)])
            raise RuntimeError("rolled back")
        assert not holder.await_appends(threading.Event())
    finally:
        holder.release()
        closed(appender)


def test_postgresql_urls_choose_the_postgres_backend():
    assert isinstance(backend_for("postgresql://ledger@db.example:5432/ledger"), PostgresBackend)
    assert isinstance(backend_for("postgres://ledger@localhost/ledger"), PostgresBackend)


def test_question_marks_become_parameters_outside_quotes_and_percent_signs_stay_literal():
    assert placeholders("SELECT ? WHERE a = '?' AND b LIKE 'x%' AND c = ?") == (
        "SELECT %s WHERE a = '?' AND b LIKE 'x%%' AND c = %s")
    assert placeholders("""SELECT 'it''s ?', "col?" , ?""") == """SELECT 'it''s ?', "col?" , %s"""


def test_question_marks_become_the_servers_numbered_parameters_outside_quotes():
    assert numbered("SELECT ? WHERE a = '?' AND b LIKE 'x%' AND c = ?") == (
        b"SELECT $1 WHERE a = '?' AND b LIKE 'x%' AND c = $2", 2, True)
    assert numbered("(select 1)") == (b"(select 1)", 0, True)
    assert numbered("CREATE TABLE t (n INTEGER DEFAULT ?)") == (b"CREATE TABLE t (n INTEGER DEFAULT $1)", 1, False)


def ledger_statements(conn) -> list[str]:
    """The statements the session of `conn` holds prepared under the ledger's own names."""
    return [row[0] for row in conn.raw.execute(
        "SELECT statement FROM pg_prepared_statements WHERE name LIKE '\\_ledger\\_%' ORDER BY statement")]


def test_a_statement_is_prepared_once_a_session_and_its_rows_are_read_whole(store):
    conn = store.conn
    for n in (1, 2, 3):
        rows = conn.execute("SELECT ? + 1 AS next, CAST(? AS TEXT) AS text", (n, "x"))
        assert rows.description == [("next",), ("text",)]
        assert rows.fetchone() == (n + 1, "x") and rows.fetchone() is None
    assert ledger_statements(conn).count("SELECT $1 + 1 AS next, CAST($2 AS TEXT) AS text") == 1
    assert list(conn.execute("SELECT n FROM generate_series(1, ?) n", (3,))) == [(1,), (2,), (3,)]
    assert conn.execute("SELECT 1 WHERE FALSE").fetchall() == []


def test_statements_are_let_go_after_a_rollback_and_prepared_again(store):
    conn = store.conn
    conn.execute("BEGIN")
    conn.execute("CREATE TABLE passing (n INTEGER)")
    conn.execute("INSERT INTO passing VALUES (?)", (1,))
    kept = ledger_statements(conn)
    assert "INSERT INTO passing VALUES ($1)" in kept and not {"BEGIN", "CREATE TABLE passing (n INTEGER)"} & set(kept)
    conn.execute("ROLLBACK")  # the table is gone: a statement prepared on it must not be kept
    assert ledger_statements(conn) == []
    conn.execute("CREATE TABLE passing (n TEXT)")
    conn.execute("INSERT INTO passing VALUES (?)", ("two",))
    assert conn.execute("SELECT n FROM passing").fetchall() == [("two",)]


def test_a_statement_let_go_elsewhere_is_prepared_again_outside_a_transaction(store):
    conn = store.conn
    assert conn.execute("SELECT CAST(? AS INTEGER)", (1,)).fetchone() == (1,)
    conn.raw.execute("DEALLOCATE ALL")  # as psycopg sends after a rollback of its own
    assert conn.execute("SELECT CAST(? AS INTEGER)", (2,)).fetchone() == (2,)
    with pytest.raises(DatabaseUnavailable, match="does not exist"), store.transaction():
        conn.raw.execute("DEALLOCATE ALL")
        conn.execute("SELECT CAST(? AS INTEGER)", (3,))  # the transaction fails with it
    assert conn.execute("SELECT CAST(? AS INTEGER)", (4,)).fetchone() == (4,)


def test_statements_let_go_here_leave_psycopgs_own(store):
    conn = store.conn
    conn.execute("CREATE TABLE apart (n INTEGER)")
    conn.execute("DROP TABLE IF EXISTS nothing_here")  # psycopg looks at a statement's status the first time only
    for n in range(7):  # psycopg prepares a statement of its own once it has run it five times
        conn.executemany("INSERT INTO apart VALUES (?)", [(n,)])
    assert conn.execute("SELECT count(*) FROM apart").fetchone() == (7,)
    conn.execute("DROP TABLE IF EXISTS nothing_here")
    assert ledger_statements(conn) == []
    psycopgs = "SELECT name FROM pg_prepared_statements WHERE name LIKE '\\_pg3\\_%'"
    assert conn.raw.execute(psycopgs).fetchall() != []  # what psycopg counts on is still there
    conn.executemany("INSERT INTO apart VALUES (?)", [(7,)])
    assert conn.execute("SELECT count(*) FROM apart").fetchone() == (8,)


def test_a_session_keeps_its_latest_statements_and_gives_them_up_with_it(postgres_url, monkeypatch):
    monkeypatch.setattr(connection, "PREPARED_MAX", 2)
    monkeypatch.setattr(connection, "POOL_SIZE", 1)
    connection.close_pools()
    conn = connection.connect(postgres_url)
    for n in (1, 2, 3, 1):
        assert conn.execute(f"SELECT {n} + ?", (1,)).fetchone() == (n + 1,)
    assert ledger_statements(conn) == ["SELECT 1 + $1", "SELECT 3 + $1"]
    conn.close()
    again = connection.connect(postgres_url)
    assert ledger_statements(again) == []  # given back to the pool, the session let them go
    assert again.execute("SELECT 2 + ?", (1,)).fetchone() == (3,)
    again.close()


def test_connections_speak_the_write_sides_sql(store):
    conn = store.conn
    assert conn.execute("SELECT ?, '?', 'a%b' || ?", (1, "c")).fetchone() == (1, "?", "a%bc")
    conn.execute("CREATE TABLE notes (n INTEGER, text TEXT)")
    conn.executemany("INSERT INTO notes VALUES (?, ?)", [(1, "one"), (2, "two")])
    assert [tuple(row) for row in conn.execute("SELECT n, text FROM notes ORDER BY n")] == [(1, "one"), (2, "two")]
    assert not conn.in_transaction
    with store.transaction():
        assert conn.in_transaction


def test_concurrent_appenders_keep_seq_gapless_and_the_chain_intact(postgres_url):
    stores = [opened_store(postgres_url) for _ in range(6)]
    start = threading.Barrier(len(stores))

    def append_many(index, store):
        start.wait()
        for version in range(1, 26):
            store.append([event(f"writer-{index}", version), event(f"writer-{index}-twin", version)])

    threads = [threading.Thread(target=append_many, args=item) for item in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    reader = stores[0]
    assert [e.seq for e in reader.read()] == list(range(1, 6 * 25 * 2 + 1))
    assert reader.verify_chain() == 300
    for store in stores:
        closed(store)


def test_a_reader_never_sees_a_later_seq_before_an_earlier_one_commits(postgres_url):
    stores = [opened_store(postgres_url) for _ in range(4)]
    reader, writers = stores[0], stores[1:]
    done, seen_gaps = threading.Event(), []

    def watch():
        while not done.is_set():
            seqs = [row[0] for row in reader.conn.execute("SELECT seq FROM events ORDER BY seq")]
            if seqs != list(range(1, len(seqs) + 1)):
                seen_gaps.append(seqs)

    def append_many(index, store):
        for version in range(1, 31):
            store.append([event(f"stream-{index}", version)])

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=append_many, args=item) for item in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join(timeout=60)
    assert seen_gaps == []
    assert reader.count() == 90
    for store in stores:
        closed(store)


def test_appenders_go_on_while_a_fold_runs(store, postgres_url):
    """Folders queue on a lock of their own: a fold holding its transaction open keeps no appender waiting."""
    appender = opened_store(postgres_url)
    try:
        with store.fold_transaction():
            outcome = []
            appending = threading.Thread(target=lambda: outcome.append(appender.append([event("a", 1)])))
            appending.start()
            appending.join(timeout=30)
            assert not appending.is_alive() and [e.seq for e in outcome[0]] == [1]
    finally:
        closed(appender)


def test_an_append_outside_a_transaction_is_one_statement(store, monkeypatch):
    """The append's rules run on the server (ledger_append): one round trip, a transaction of its own."""
    sent = []
    execute = connection.Connection.execute
    monkeypatch.setattr(connection.Connection, "execute", lambda self, sql, *args: sent.append(sql) or execute(self, sql, *args))
    store.append([event("a", 1), event("b", 1)])
    store.append(Decision([event("a", 2)], read={"b": 1}))
    assert len(sent) == 2 and not store.conn.in_transaction
    assert [e.seq for e in store.read()] == [1, 2, 3] and store.verify_chain() == 3


def test_recorded_at_never_goes_back_along_the_log(store, now):
    """A node whose clock is behind the last append's records the time the log stands at."""
    now("2026-03-15T12:00:05Z")
    (first,) = store.append([event("a", 1)])
    now("2026-03-15T12:00:01Z")
    (second,) = store.append([event("a", 2)])
    assert second.recorded_at == first.recorded_at == "2026-03-15T12:00:05.000000Z"
    assert list(store.read())[1].recorded_at == second.recorded_at and store.verify_chain() == 2


def test_an_append_function_of_another_release_is_replaced_at_start(store, postgres_url):
    store.conn.execute(store_module.APPEND_FUNCTION.replace(store_module.APPEND_BODY, " BEGIN RAISE EXCEPTION 'an earlier release'; END "))
    with pytest.raises(DatabaseUnavailable, match="an earlier release"):
        store.append([event("a", 1)])
    restarted = opened_store(postgres_url)
    try:
        assert [e.seq for e in restarted.append([event("a", 1)])] == [1]
    finally:
        closed(restarted)


def test_the_database_refuses_update_delete_and_truncate_of_the_log(store):
    store.append([event("a", 1)])
    for statement in ("UPDATE events SET data = '{}'", "DELETE FROM events", "TRUNCATE events"):
        with pytest.raises(IntegrityViolation, match="append-only") as refused:
            with driver_errors.translated():
                store.conn.execute(statement)
        assert isinstance(refused.value.__cause__, psycopg.IntegrityError)
    assert store.count() == 1


def test_nodes_starting_together_make_the_log_once(postgres_url):
    stores = [PostgresEventStore(connection.connect(postgres_url)) for _ in range(5)]
    start, failures = threading.Barrier(len(stores)), []

    def create(store):
        start.wait()
        try:
            store.create_schema()
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            failures.append(error)

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    stores[0].append([event("a", 1)])
    assert stores[4].count() == 1
    for store in stores:
        closed(store)


def test_a_snapshot_sees_the_log_as_of_its_first_read(store, postgres_url):
    other = opened_store(postgres_url)
    store.append([event("a", 1)])
    with store.snapshot():
        assert store.count() == 1
        other.append([event("a", 2)])
        assert store.count() == 1
    assert store.count() == 2
    closed(other)


def test_the_lease_holder_names_its_pid_for_operators(postgres_url):
    lease = PostgresBackend(postgres_url).projector_lease(None)
    assert lease.acquire()
    look = connection.direct(postgres_url)
    (holder,) = look.execute(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = 1886547818"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    assert holder.startswith(f"ledger projector pid {os.getpid()} on ")
    lease.release()
    look.close()


def test_a_lease_whose_session_ended_is_taken_by_another(postgres_url):
    backend = PostgresBackend(postgres_url)
    first, second = backend.projector_lease(None), backend.projector_lease(None)
    assert first.acquire()
    look = connection.direct(postgres_url)
    look.execute("SELECT pg_terminate_backend(?)", (first.conn.raw.info.backend_pid,))
    look.close()
    assert taken_within(second, TAKEOVER_SECONDS)
    assert not first.acquire() and not first.held  # its holder finds out when it next asks
    second.release()
    assert first.acquire()
    first.release()


def test_driver_errors_become_the_ledgers_own(store):
    with pytest.raises(DatabaseUnavailable, match="does not exist"), store.transaction():
        store.conn.execute("SELECT * FROM missing")
    assert not store.conn.in_transaction
    assert type(driver_errors.neutral(psycopg.errors.SerializationFailure("raced"))) is TransactionAborted
    assert type(driver_errors.neutral(psycopg.errors.DeadlockDetected("raced"))) is TransactionAborted
    assert issubclass(TransactionAborted, StreamConflict)  # so that a write decides and appends again
    assert type(driver_errors.neutral(psycopg.errors.LockNotAvailable("busy"))) is DatabaseLocked
    with pytest.raises(DatabaseUnavailable), translated():
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)


def test_a_database_with_other_tables_is_not_a_ledger_and_an_empty_one_may_become_one(postgres_url, postgres_server):
    backend = PostgresBackend(postgres_url)
    assert backend.exists() and backend.writable()
    backend.check_ledger(empty_allowed=True)
    with pytest.raises(NotALedger, match="empty"):
        backend.check_ledger(empty_allowed=False)
    look = connection.direct(postgres_url)
    look.execute("CREATE TABLE unrelated (n INTEGER)")
    look.close()
    with pytest.raises(NotALedger, match="no event log"):
        backend.check_ledger(empty_allowed=True)
    assert not PostgresBackend(postgres_server.url("no_such_database")).exists()


def test_a_read_only_connection_never_writes(store, postgres_url):
    reader = connection.connect(postgres_url, read_only=True)
    with pytest.raises(DatabaseUnavailable, match="read-only"), translated():
        reader.execute("CREATE TABLE notes (n INTEGER)")
    reader.close()



def test_a_connection_whose_session_ended_gives_its_place_in_the_pool_back(postgres_url, monkeypatch):
    monkeypatch.setattr(connection, "POOL_SIZE", 1)
    connection.close_pools()
    first = connection.connect(postgres_url)
    look = connection.direct(postgres_url)
    look.execute("SELECT pg_terminate_backend(?)", (first.raw.info.backend_pid,))
    look.close()
    with pytest.raises(DatabaseUnavailable), translated():
        first.execute("SELECT 1")
    first.close()
    second = connection.connect(postgres_url)  # within the pool's timeout: the broken one's place is free
    assert second.execute("SELECT 1").fetchone() == (1,)
    second.close()


def test_a_lost_session_is_renewed_in_place_with_none_of_its_transaction(store, postgres_url):
    """After a server restart (its sessions ended), the store goes on in a new session of its pool,
    its statements prepared anew there; a transaction open in the lost one is gone, not carried on."""
    assert store.conn.execute("SELECT 1").fetchone() == (1,)  # prepared in the first session
    assert not store.renew_if_lost()
    store.conn.execute("BEGIN")
    end_sessions(postgres_url)
    with pytest.raises(DatabaseUnavailable), translated():
        store.conn.execute("SELECT 1")
    assert store.renew_if_lost()
    assert not store.conn.in_transaction
    assert store.conn.execute("SELECT 1").fetchone() == (1,)
    store.append([event("a", 1)])
    assert store.head()[0] == 1
    assert not store.renew_if_lost()


def test_a_session_left_in_the_pool_while_the_server_restarted_is_never_lent(postgres_url):
    connection.connect(postgres_url).close()  # idle in the pool
    assert end_sessions(postgres_url) >= 1
    conn = connection.connect(postgres_url)
    assert conn.execute("SELECT 1").fetchone() == (1,)
    conn.close()


def test_a_lease_whose_own_session_ended_while_another_held_it_takes_it_later(postgres_url):
    """A process's lease that lost to another keeps its session to try again; when the server ends
    both sessions (a restart), it takes the lease in a new one, instead of failing on the lost one."""
    backend = PostgresBackend(postgres_url)
    holder, other = backend.projector_lease(None), backend.projector_lease(None)
    assert holder.acquire() and not other.acquire()
    end_sessions(postgres_url)
    assert other.acquire() and other.held
    assert not holder.acquire()
    other.release()
    assert holder.acquire()
    holder.release()


def test_a_session_given_back_to_the_pool_loses_what_it_set(postgres_url, monkeypatch):
    monkeypatch.setattr(connection, "POOL_SIZE", 1)
    connection.close_pools()
    scratch = opened_store(postgres_url)
    scratch.forgo_durability()
    assert scratch.conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
    backend_pid = scratch.conn.raw.info.backend_pid
    closed(scratch)
    again = connection.connect(postgres_url)
    assert again.raw.info.backend_pid == backend_pid  # the same session, from the pool of one
    assert again.execute("SHOW synchronous_commit").fetchone() == ("on",)
    timeout_ms = again.execute("SELECT setting FROM pg_settings WHERE name = 'lock_timeout'").fetchone()[0]
    assert int(timeout_ms) == connection.LOCK_TIMEOUT_SECONDS * 1000  # what every session starts with stays
    again.close()


def test_a_snapshot_opened_inside_another_is_the_same_transaction(store, monkeypatch):
    """A snapshot's BEGIN travels in a pipeline with its first read; one opened inside it must see
    the transaction open (libpq reads it as idle until the pipeline syncs), not begin another."""
    sent = []
    execute = connection.Connection.execute
    monkeypatch.setattr(connection.Connection, "execute", lambda self, sql, *args: sent.append(sql) or execute(self, sql, *args))
    with store.snapshot():
        store.head()
        assert store.conn.in_transaction
        with store.snapshot():
            store.head()
    assert [sql for sql in sent if sql.startswith(("BEGIN", "COMMIT"))] == [store.begin_snapshot, "COMMIT"]


def test_reading_a_streams_version_reads_one_row_of_it_however_many_it_has(store, monkeypatch):
    """As on SQLite (test_sqlite_backend.py): a stream's version is read off the end of its index,
    not aggregated over every version it has; with a decision's horizon too."""
    streams = [f"long/{n}" for n in range(3)]
    store.append([event(stream, version) for stream in streams for version in range(1, 201)])
    # As over a log of millions: a few hundred rows would be read whole whatever the statement.
    store.conn.execute("SET enable_seqscan = off")
    store.conn.execute("SET enable_bitmapscan = off")
    for horizon in (None, store.head()[0] - 1):
        sent = []
        execute = connection.Connection.execute
        monkeypatch.setattr(connection.Connection, "execute",
                            lambda self, sql, *args: sent.append((sql, *args)) or execute(self, sql, *args))
        if horizon is None:
            assert store.stream_versions([*streams, "none"]) == {**dict.fromkeys(streams, 200), "none": 0}
        else:
            with store.deciding_at(horizon):
                assert store.stream_versions(streams) == {**dict.fromkeys(streams[:2], 200), streams[2]: 199}
        monkeypatch.undo()
        (statement, parameters), = sent
        (plan,), = store.conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).fetchone()
        assert rows_of(plan["Plan"], "events") <= len(streams), plan


def rows_of(node: dict, relation: str) -> float:
    """The rows that the scans of `relation` in a plan's `node` gave, over all their loops."""
    own = node["Actual Rows"] * node["Actual Loops"] if node.get("Relation Name") == relation else 0
    return own + sum(rows_of(child, relation) for child in node.get("Plans", ()))
