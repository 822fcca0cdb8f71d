"""The event store's contract: what any backend of `EventStore` must do.

`EventStoreContract` holds the tests; a backend subclasses it and provides the fixtures
`store` and `second_store` (another connection to the same, empty log), `another_log`
(a store over another, empty database) and the hooks that reach under the store's
interface (raw writes, dropping the guards).
"""

import abc
import hashlib
import json
import threading
import time
import tracemalloc
import uuid

import pytest

from ledger.backends import translated
from ledger.errors import ChainBroken, IntegrityViolation, StreamConflict
from ledger.log.hashing import GENESIS_HASH
from ledger.log.records import Decision, NewEvent
from ledger.log.store import EventStore


def event(stream: str, version: int, data: dict | None = None, **fields) -> NewEvent:
    return NewEvent(
        stream=stream, version=version, type=fields.pop("type", "Noted"), data={"n": version} if data is None else data,
        occurred_at=fields.pop("occurred_at", "2026-03-15T12:00:00.000000Z"), **fields,
    )


def expected_hash(row: dict) -> str:
    """The chain rule, written out independently of the store."""
    content = {key: value for key, value in row.items() if key not in ("prev_hash", "hash")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((row["prev_hash"] + text).encode()).hexdigest()


class EventStoreContract(abc.ABC):
    """The tests every event store backend must pass; a backend's subclass provides the hooks."""

    refused = IntegrityViolation  # what the backend raises when the log refuses a raw change

    @abc.abstractmethod
    def update_event(self, store, seq: int, column: str, value) -> None:
        """Tries a raw UPDATE of one column of one event, past the store's API, its errors translated."""

    @abc.abstractmethod
    def delete_event(self, store, seq: int) -> None:
        """Tries a raw DELETE of one event, past the store's API, its errors translated."""

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

    def test_a_failed_savepoint_is_undone_alone(self, store):
        with store.transaction():
            store.append([event("a", 1)])
            with pytest.raises(RuntimeError), store.savepoint():
                store.append([event("b", 1)])
                raise RuntimeError("this part of the transaction failed")
            with store.savepoint():
                store.append([event("c", 1)])
        assert [(e.seq, e.stream) for e in store.read()] == [(1, "a"), (2, "c")]
        assert store.verify_chain() == 2

    def test_a_row_the_database_refuses_inside_a_savepoint_is_a_conflict_undone_alone(self, store):
        """A taken event id, which only the database checks: refused where the rows are written or
        (rows sent with the savepoint's end) at the savepoint's end, and the transaction goes on."""
        with store.transaction():
            first = store.append([event("a", 1)])[0].row()
            with pytest.raises(StreamConflict), store.savepoint():
                store.insert_rows([tuple({**first, "seq": 2, "stream": "b"}[column] for column in first)])
            with store.savepoint():
                store.append([event("c", 1)])
        assert [(e.seq, e.stream) for e in store.read()] == [(1, "a"), (2, "c")]
        assert store.verify_chain() == 2

    def test_a_savepoint_that_could_not_be_made_raises_its_own_error(self, store, monkeypatch):
        """Not the undo's ("no such savepoint"), which would hide why; the transaction is undone whole."""
        class Refusing:  # the store's connection, refusing to make savepoints
            def __init__(self, conn):
                self.conn = conn

            def execute(self, sql, *parameters):
                if sql.startswith("SAVEPOINT"):
                    raise RuntimeError("savepoint refused")
                return self.conn.execute(sql, *parameters)

            def __getattr__(self, name):
                return getattr(self.conn, name)

        with pytest.raises(RuntimeError, match="savepoint refused"), store.transaction():
            store.append([event("a", 1)])
            monkeypatch.setattr(store, "conn", Refusing(store.conn))
            with store.savepoint():
                store.append([event("b", 1)])
        monkeypatch.undo()
        assert list(store.read()) == []

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

    def test_a_folder_holding_a_fold_transaction_makes_the_other_folder_wait(self, store, second_store):
        with store.fold_transaction():
            entered = threading.Event()

            def fold():
                with second_store.fold_transaction():
                    entered.set()

            waiting = threading.Thread(target=fold)
            waiting.start()
            assert not entered.wait(timeout=0.3)  # blocked behind the open fold
        waiting.join(timeout=30)
        assert entered.is_set()

    # Read-sets and the horizon

    def test_a_decision_fails_when_a_stream_it_read_has_moved(self, store):
        store.append([event("read", 1)])
        decision = Decision([event("a", 1)], read={"read": 1})
        store.append([event("read", 2)])
        with pytest.raises(StreamConflict, match="moved"):
            store.append(decision)
        assert store.stream_version("a") == 0

    def test_a_decision_whose_read_streams_stand_still_lands(self, store):
        store.append([event("read", 1)])
        stored = store.append(Decision([event("a", 1)], read={"read": 1, "never": 0}))
        assert [e.stream for e in stored] == ["a"]

    def test_a_decision_of_nothing_still_checks_what_it_read(self, store):
        store.append([event("read", 1)])
        assert store.append(Decision([], read={"read": 1})) == []
        with pytest.raises(StreamConflict):
            store.append(Decision([], read={"read": 0}))

    def test_versions_read_while_deciding_are_as_of_the_horizon(self, store):
        store.append([event("a", 1), event("a", 2), event("b", 1)])
        with store.deciding_at(1):
            assert store.stream_versions(["a", "b"]) == {"a": 1, "b": 0}
        assert store.stream_versions(["a", "b"]) == {"a": 2, "b": 1}

    def test_a_decision_made_behind_the_horizon_conflicts(self, store):
        store.append([event("a", 1), event("a", 2)])
        with store.deciding_at(1):
            decided = Decision([event("b", 1)], read={"a": store.stream_version("a")})
        with pytest.raises(StreamConflict):
            store.append(decided)

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

    def test_head_is_the_last_seq_and_hash(self, store):
        assert store.head() == (0, GENESIS_HASH)
        store.append([event("a", 1), event("b", 1)])
        last = list(store.read())[-1]
        assert store.head() == (2, last.hash)
        assert store.event_hash(2) == last.hash and store.event_hash(3) is None

    def test_tip_is_the_head_and_the_versions_of_the_streams_asked(self, store):
        assert store.tip(["a", "b"]) == (0, GENESIS_HASH, {"a": 0, "b": 0})
        store.append([event("a", 1), event("a", 2), event("c", 1)])
        assert store.tip(["a", "b", "a"]) == (*store.head(), {"a": 2, "b": 0})
        assert store.tip([]) == (3, store.head()[1], {})

    def test_head_seq_with_a_row_of_the_callers(self, store):
        assert store.head_seq_with("SELECT 7, 'x'") == (0, (7, "x"))
        store.append([event("a", 1), event("b", 1)])
        assert store.head_seq_with("SELECT 7, 'x'") == (2, (7, "x"))

    def test_head_seq_with_types_unwaited_is_their_last_other_event_past_the_rows_position(self, store):
        assert store.head_seq_with("SELECT 0 AS position, 'x'", ["Noted"]) == (0, (0, "x"))
        assert store.head_seq_with("SELECT CAST(NULL AS INTEGER) AS position", ["Noted"]) == (0, (None,))
        store.append([event("a", 1), event("b", 1, type="Other"), event("a", 2), event("c", 1, type="Third")])
        assert store.head_seq_with("SELECT 0 AS position", ["Noted"]) == (4, (0,))
        assert store.head_seq_with("SELECT 0 AS position", ["Noted", "Third"]) == (2, (0,))
        assert store.head_seq_with("SELECT 2 AS position", ["Noted", "Third"]) == (2, (2,))  # none past 2: 2 itself
        assert store.head_seq_with("SELECT 3 AS position", ["Noted", "Third", "Other"]) == (3, (3,))
        assert store.head_seq_with("SELECT CAST(NULL AS INTEGER) AS position", ["Noted"]) == (4, (None,))
        assert store.head_seq_with("SELECT 1 AS position", []) == (4, (1,))  # none unwaited: the head

    def test_streams_by_prefix(self, store):
        store.append([event("period/2026-01", 1), event("other", 1), event("period/2026-02", 1), event("period/2026-01", 2)])
        assert [(e.stream, e.version) for e in store.read_streams("period/")] == [
            ("period/2026-01", 1), ("period/2026-02", 1), ("period/2026-01", 2)]
        greatest = store.last_of_greatest_stream("period/")
        assert (greatest.stream, greatest.version) == ("period/2026-02", 1)
        assert store.last_of_greatest_stream("nothing/") is None

    def test_seq_at_a_time_is_the_log_as_it_stood_then(self, store, now):
        now("2026-03-15T12:00:00Z")
        store.append([event("a", 1)])
        now("2026-03-15T13:00:00Z")
        store.append([event("a", 2), event("a", 3)])
        assert store.seq_at("2026-03-15T12:30:00.000000Z") == 1
        assert store.seq_at("2026-03-15T11:00:00.000000Z") == 0
        assert store.seq_at("2026-03-15T14:00:00.000000Z") == 3

    # Import

    def test_import_keeps_ids_times_and_hashes(self, store, another_log):
        store.append([event("a", 1, {"x": "é"}, actor_id=4), event("b", 1)])
        exported = list(store.read())
        another_log.import_events(exported)
        assert list(another_log.read()) == exported
        assert another_log.verify_chain() == 2

    def test_an_import_that_takes_a_version_again_is_a_conflict_and_lands_nothing(self, store, another_log):
        store.append([event("a", 1), event("b", 1)])
        first, second = store.read()
        another_log.import_events([first])
        with pytest.raises(StreamConflict):
            another_log.import_events([second, first])
        assert another_log.count() == 1

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
            event("tab\tand\u2028", 1, {"rocket": "🚀 \u0001"}, actor_id=None),
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


class SQLHooks:
    """The hooks of a backend whose connection runs SQL with `?` parameters on an `events` table."""

    def update_event(self, store, seq, column, value):
        with translated():
            store.conn.execute(f"UPDATE events SET {column} = ? WHERE seq = ?", (value, seq))

    def delete_event(self, store, seq):
        with translated():
            store.conn.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def stored_data_text(self, store, seq):
        return store.conn.execute("SELECT data FROM events WHERE seq = ?", (seq,)).fetchone()[0]


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
