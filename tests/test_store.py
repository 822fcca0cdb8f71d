"""The event store's contract: what any backend of `EventStore` must do.

`EventStoreContract` holds the tests; a backend subclasses it and provides the fixtures
`store` and `second_store` (another connection to the same, empty log) and the hooks
that reach under the store's interface (raw writes, dropping the guards).
"""

import abc
import hashlib
import json
import os
import sqlite3
import threading
import time
import tracemalloc
import uuid

import pytest

from ledger.backends.sqlite import connection as connection_module
from ledger.backends.sqlite import locks
from ledger.backends.sqlite.store import SQLiteEventStore
from ledger.backends.sqlite.connection import connect
from ledger.errors import ChainBroken, DatabaseLocked, StreamConflict
from ledger.log.hashing import GENESIS_HASH, chain_hash, row_hash
from ledger.log.records import COLUMNS, NewEvent
from ledger.log.store import EventStore


def event(stream: str, version: int, data: dict | None = None, **fields) -> NewEvent:
    return NewEvent(
        stream=stream, version=version, type="Noted", data={"n": version} if data is None else data,
        occurred_at=fields.pop("occurred_at", "2026-03-15T12:00:00.000000Z"), **fields,
    )


def expected_hash(row: dict) -> str:
    """The chain rule, written out independently of the store."""
    content = {key: value for key, value in row.items() if key not in ("prev_hash", "hash")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((row["prev_hash"] + text).encode()).hexdigest()


class EventStoreContract(abc.ABC):
    """The tests every event store backend must pass; a backend's subclass provides the hooks."""

    refused = Exception  # what the backend raises when the log refuses a raw change

    @abc.abstractmethod
    def update_event(self, store, seq: int, column: str, value) -> None:
        """Tries a raw UPDATE of one column of one event, past the store's API."""

    @abc.abstractmethod
    def delete_event(self, store, seq: int) -> None:
        """Tries a raw DELETE of one event, past the store's API."""

    @abc.abstractmethod
    def drop_guards(self, store) -> None:
        """Removes what refuses UPDATE and DELETE, so that a test can tamper with the log."""

    @abc.abstractmethod
    def stored_data_text(self, store, seq: int) -> str:
        """The event's data exactly as stored."""

    # Appending

    def test_append_assigns_gapless_seq_from_1_across_streams(self, store):
        store.append([event("a", 1), event("b", 1)])
        store.append([event("a", 2)])
        store.append([event("c", 1), event("b", 2)])
        assert [e.seq for e in store.read()] == [1, 2, 3, 4, 5]
        assert store.count() == 5

    def test_append_returns_the_stored_events(self, store):
        stored = store.append([event("a", 1, {"x": 1}, actor_id=7), event("a", 2, actor_id=None)])
        assert stored == list(store.read())
        first = stored[0]
        assert (first.stream, first.version, first.type, first.schema_version) == ("a", 1, "Noted", 1)
        assert (first.data, first.actor_id, first.occurred_at) == ({"x": 1}, 7, "2026-03-15T12:00:00.000000Z")
        assert stored[1].actor_id is None

    def test_each_event_gets_a_distinct_event_id(self, store):
        stored = store.append([event("a", 1), event("a", 2), event("b", 1)])
        assert len({e.event_id for e in stored}) == 3

    def test_append_of_nothing_writes_nothing(self, store):
        assert store.append([]) == []
        assert store.count() == 0

    def test_append_accepts_consecutive_versions_of_one_stream_in_a_batch(self, store):
        store.append([event("a", 1), event("a", 2), event("a", 3)])
        assert store.stream_version("a") == 3

    def test_a_version_already_taken_is_a_conflict(self, store):
        store.append([event("a", 1)])
        with pytest.raises(StreamConflict):
            store.append([event("a", 1)])
        assert store.count() == 1

    def test_a_version_gap_is_a_conflict(self, store):
        store.append([event("a", 1)])
        with pytest.raises(StreamConflict):
            store.append([event("a", 3)])
        assert store.stream_version("a") == 1

    def test_a_stream_starts_at_version_1(self, store):
        with pytest.raises(StreamConflict):
            store.append([event("a", 0)])

    def test_a_duplicate_version_within_a_batch_is_a_conflict(self, store):
        with pytest.raises(StreamConflict):
            store.append([event("a", 1), event("a", 1)])

    def test_a_conflict_writes_nothing_of_its_batch(self, store):
        store.append([event("b", 1)])
        with pytest.raises(StreamConflict):
            store.append([event("a", 1), event("c", 1), event("b", 1)])
        assert [e.stream for e in store.read()] == ["b"]
        assert store.stream_version("a") == 0
        store.append([event("a", 1)])
        assert [e.seq for e in store.read()] == [1, 2]

    def test_an_append_in_a_failed_transaction_is_rolled_back(self, store):
        with pytest.raises(RuntimeError), store.transaction():
            store.append([event("a", 1)])
            raise RuntimeError("the command failed after appending")
        assert store.count() == 0
        assert store.stream_version("a") == 0

    def test_concurrent_appends_to_one_stream_have_exactly_one_winner(self, store, second_store):
        outcomes = race(
            lambda: store.append([event("a", 1, {"by": "first"})]),
            lambda: second_store.append([event("a", 1, {"by": "second"})]),
        )
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["StreamConflict", "list"]
        (winner,) = [outcome for outcome in outcomes if isinstance(outcome, list)]
        assert list(store.read()) == winner

    def test_concurrent_appends_to_different_streams_both_land_gapless(self, store, second_store):
        outcomes = race(
            lambda: store.append([event("a", 1), event("a", 2)]),
            lambda: second_store.append([event("b", 1), event("b", 2)]),
        )
        assert all(isinstance(outcome, list) for outcome in outcomes)
        assert [e.seq for e in store.read()] == [1, 2, 3, 4]
        store.verify_chain()

    def test_a_writer_holding_a_transaction_makes_the_other_wait_then_conflict(self, store, second_store):
        with store.transaction():
            store.append([event("a", 1)])
            outcome = []
            waiting = threading.Thread(target=lambda: outcome.append(attempt(second_store, [event("a", 1)])))
            waiting.start()
            waiting.join(timeout=0.3)
            assert waiting.is_alive()  # blocked behind the open write transaction
        waiting.join(timeout=30)
        assert isinstance(outcome[0], StreamConflict)

    # Reading

    def test_read_by_range_of_seq(self, store):
        store.append([event("a", v) for v in range(1, 7)])
        assert [e.seq for e in store.read(after=2, until=4)] == [3, 4]
        assert [e.seq for e in store.read(after=4)] == [5, 6]
        assert [e.seq for e in store.read(until=2)] == [1, 2]
        assert list(store.read(after=6)) == []

    def test_read_in_small_batches_returns_every_event_once(self, store):
        store.append([event("a", v) for v in range(1, 11)])
        assert [e.seq for e in store.read(batch=3)] == list(range(1, 11))
        assert [e.seq for e in store.read(after=1, until=8, batch=3)] == list(range(2, 9))

    def test_read_fetches_one_batch_at_a_time(self, store):
        store.append([event("a", v) for v in range(1, 4)])
        events = store.read(batch=1)
        assert next(events).seq == 1
        store.append([event("a", 4)])
        assert [e.seq for e in events] == [2, 3, 4]  # the later batches were fetched after this append

    def test_read_holds_one_batch_in_memory(self, store):
        padding = "x" * 2000
        store.append([event("a", v, {"pad": padding}) for v in range(1, 2001)])  # about 4 MB of data
        tracemalloc.start()
        try:
            count = sum(1 for _ in store.read(batch=20))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert count == 2000
        assert peak < 1_000_000

    def test_read_stream_returns_one_stream_in_version_order(self, store):
        store.append([event("a", 1), event("b", 1), event("a", 2), event("b", 2), event("a", 3)])
        assert [(e.stream, e.version) for e in store.read_stream("a")] == [("a", 1), ("a", 2), ("a", 3)]
        assert list(store.read_stream("nothing")) == []

    def test_last_event_of_a_stream(self, store):
        store.append([event("a", 1), event("a", 2, {"last": True}), event("b", 1)])
        last = store.last_event("a")
        assert (last.version, last.data, last.seq) == (2, {"last": True}, 2)
        assert store.last_event("nothing") is None

    def test_stream_versions_of_many_streams_in_one_call(self, store):
        store.append([event(f"s{n}", v) for n in range(1200) for v in range(1, n % 3 + 1)])
        asked = [f"s{n}" for n in range(1200)] + ["s5", "never"]
        assert store.stream_versions(asked) == {**{f"s{n}": n % 3 for n in range(1200)}, "never": 0}

    def test_stream_version_is_0_for_an_empty_stream(self, store):
        store.append([event("a", 1), event("a", 2)])
        assert store.stream_version("a") == 2
        assert store.stream_version("b") == 0

    def test_data_round_trips_unicode_and_nesting(self, store):
        data = {
            "zeta": "Grüße, 東京, emoji 🚀, quote \" backslash \\ newline \n",
            "alpha": {"nested": [1, 2.5, None, True, {"deeper": ["é", {}]}], "empty": []},
            "amount": "12.50", "negative": -3, "big": 10**18,
        }
        (stored,) = store.append([event("a", 1, data)])
        assert stored.data == data
        assert next(store.read()).data == data

    def test_data_is_stored_as_canonical_json(self, store):
        store.append([event("a", 1, {"b": "é", "a": {"d": 1, "c": [2, 1]}})])
        assert self.stored_data_text(store, 1) == '{"a":{"c":[2,1],"d":1},"b":"é"}'

    # Immutability

    def test_update_is_refused(self, store):
        store.append([event("a", 1)])
        with pytest.raises(self.refused):
            self.update_event(store, 1, "data", '{"n":2}')
        assert next(store.read()).data == {"n": 1}

    def test_delete_is_refused(self, store):
        store.append([event("a", 1)])
        with pytest.raises(self.refused):
            self.delete_event(store, 1)
        assert store.count() == 1

    # The hash chain

    def test_first_event_links_to_the_genesis_hash(self, store):
        (first,) = store.append([event("a", 1)])
        assert first.prev_hash == GENESIS_HASH == "0" * 64

    def test_each_hash_covers_prev_hash_and_every_other_column(self, store):
        store.append([event("a", 1, {"x": "é"}, actor_id=3), event("b", 1)])
        store.append([event("a", 2)])
        for stored in store.read():
            assert stored.hash == expected_hash(stored.row() | {"data": stored.data})

    def test_each_hash_follows_the_chain_rule_for_unusual_values(self, store):
        store.append([
            event('quote"back\\slash\nline', 1, {"nested": {"é": [1, 2.5, None, True]}}, actor_id=7),
            event("tab\tand\u2028", 1, {}, actor_id=None),
        ])
        for stored in store.read():
            assert stored.hash == expected_hash(stored.row() | {"data": stored.data})

    def test_event_ids_are_time_ordered_uuids(self, store):
        first = store.append([event("a", 1)])[0].event_id
        time.sleep(0.002)
        second = store.append([event("a", 2)])[0].event_id
        assert uuid.UUID(first).version == uuid.UUID(second).version == 7
        assert first < second  # so that new ids land at the end of the event_id index

    def test_each_event_links_to_the_hash_of_the_one_before(self, store):
        store.append([event("a", 1), event("b", 1)])
        store.append([event("a", 2)])
        events = list(store.read())
        assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]

    def test_verify_chain_passes_on_a_good_log(self, store):
        store.append([event("a", v) for v in range(1, 4)])
        store.append([event("b", 1)])
        assert store.verify_chain() == 4

    def test_verify_chain_passes_on_an_empty_log(self, store):
        assert store.verify_chain() == 0

    def test_verify_chain_names_the_event_whose_data_was_changed(self, store):
        store.append([event("a", v) for v in range(1, 6)])
        self.drop_guards(store)
        self.update_event(store, 3, "data", '{"n":300}')
        with pytest.raises(ChainBroken, match="seq 3") as broken:
            store.verify_chain()
        assert broken.value.seq == 3

    def test_verify_chain_names_the_event_after_a_rehashed_one(self, store):
        stored = store.append([event("a", v) for v in range(1, 6)])
        forged = stored[2].row() | {"data": {"n": 300}}
        self.drop_guards(store)
        self.update_event(store, 3, "data", '{"n":300}')
        self.update_event(store, 3, "hash", expected_hash(forged))
        with pytest.raises(ChainBroken, match="seq 4") as broken:
            store.verify_chain()
        assert broken.value.seq == 4

    def test_verify_chain_names_the_event_after_a_deleted_one(self, store):
        store.append([event("a", v) for v in range(1, 6)])
        self.drop_guards(store)
        self.delete_event(store, 2)
        with pytest.raises(ChainBroken) as broken:
            store.verify_chain()
        assert broken.value.seq == 3

    def test_verify_chain_names_an_event_with_a_changed_actor(self, store):
        store.append([event("a", v, actor_id=1) for v in range(1, 4)])
        self.drop_guards(store)
        self.update_event(store, 2, "actor_id", 2)
        with pytest.raises(ChainBroken) as broken:
            store.verify_chain()
        assert broken.value.seq == 2


def attempt(store: EventStore, events: list[NewEvent]):
    """The stored events, or the StreamConflict the append raised."""
    try:
        return store.append(events)
    except StreamConflict as conflict:
        return conflict


def race(*appends) -> list:
    """Runs appends in threads released together; returns each one's result or StreamConflict."""
    start = threading.Barrier(len(appends))
    outcomes = [None] * len(appends)

    def run(index, append):
        start.wait()
        try:
            outcomes[index] = append()
        except StreamConflict as conflict:
            outcomes[index] = conflict

    threads = [threading.Thread(target=run, args=item) for item in enumerate(appends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


class TestSQLiteEventStore(EventStoreContract):
    refused = sqlite3.IntegrityError

    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "events.db")

    @pytest.fixture
    def store(self, path):
        conn = connect(path)
        opened = SQLiteEventStore(conn)
        opened.create_schema()
        yield opened
        opened.close()
        conn.close()

    @pytest.fixture
    def second_store(self, store, path):
        conn = connect(path)
        second = SQLiteEventStore(conn)
        yield second
        second.close()
        conn.close()

    def update_event(self, store, seq, column, value):
        store.conn.execute(f"UPDATE events SET {column} = ? WHERE seq = ?", (value, seq))

    def delete_event(self, store, seq):
        store.conn.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def drop_guards(self, store):
        for (name,) in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            store.conn.execute(f"DROP TRIGGER {name}")

    def stored_data_text(self, store, seq):
        return store.conn.execute("SELECT data FROM events WHERE seq = ?", (seq,)).fetchone()[0]


def test_row_hash_of_a_column_json_writes_otherwise_follows_the_definition():
    row = (1, "id", "stream", 1, "Noted", 1, "2026-03-15T12:00:00Z", "2026-03-15T12:00:00Z", True, '{"n":1}', GENESIS_HASH)
    content = dict(zip(COLUMNS, row)) | {"data": {"n": 1}}
    assert row_hash(GENESIS_HASH, row, {"n": 1}) == chain_hash(GENESIS_HASH, content) == expected_hash(content)


def test_the_writer_lock_file_is_opened_once_for_many_writes(tmp_path, monkeypatch):
    path = str(tmp_path / "events.db")
    store = SQLiteEventStore(connect(path))
    store.create_schema()
    opened, real_open = [], os.open
    monkeypatch.setattr(locks.os, "open", lambda name, *args: opened.append(name) or real_open(name, *args))
    for version in range(1, 6):
        store.append([event("s", version)])
    store.close()
    store.conn.close()
    assert opened == [f"{os.path.realpath(path)}.writer-lock"]


def test_a_forked_process_queues_for_the_writer_lock_it_inherited(tmp_path, monkeypatch):
    """A lock belongs to the open file: with the parent's file, the child would be let in."""
    monkeypatch.setattr(connection_module, "BUSY_TIMEOUT_SECONDS", 0.2)
    store = SQLiteEventStore(connect(str(tmp_path / "events.db")))
    store.create_schema()
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
    store.close()
    store.conn.close()
    assert os.waitstatus_to_exitcode(status) == 0
