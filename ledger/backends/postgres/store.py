"""The event store in PostgreSQL: the events table, its guards, transactions under the append lock.

Appends are serialised by a transaction-scoped advisory lock, taken first in every write
transaction: seq is the head + 1 under it, and the lock is let go only once the transaction is
visible, so seq is gapless in commit order and no reader ever sees seq N+1 before N.
"""

import contextlib
from collections.abc import Iterable, Iterator

from psycopg import errors

from ledger.backends.postgres.connection import Connection
from ledger.backends.postgres.driver_errors import translated
from ledger.backends.postgres.lease import APPENDED_CHANNEL
from ledger.backends.sql import STREAM_VERSION, SQLEventStore
from ledger.errors import StreamConflict
from ledger.log.hashing import GENESIS_HASH, hashed_text_around
from ledger.log.records import Decision, NewEvent, StoredEvent, canonical
from ledger.log.store import uuid7
from ledger.rules import clock

# The advisory lock key every write transaction of a database queues on (the SQLite writer lock's role).
APPEND_LOCK = 0x6C6564676572  # "ledger"
# Folders queue on a lock of their own: the views are written by folds alone, so appenders go on
# while one runs. Taken after APPEND_LOCK when both are (a decision under the lock folds first).
FOLD_LOCK = 0x766965777321  # "views!"

# Streams compare byte by byte (COLLATE "C"), as in SQLite: prefix ranges and "greatest stream" agree.
SCHEMA = (
    """CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        stream TEXT COLLATE "C" NOT NULL,
        version BIGINT NOT NULL,
        type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        occurred_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        actor_id BIGINT,
        data TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        UNIQUE (stream, version)
    )""",
    """CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'the event log is append-only' USING ERRCODE = 'integrity_constraint_violation';
        END
    $$""",
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events FOR EACH ROW EXECUTE FUNCTION events_append_only()",
    "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events EXECUTE FUNCTION events_append_only()",
)
# An append in one statement (PostgresEventStore.append): under the append lock, the streams read
# must stand at the versions read and each event must be the next version of its stream (else a
# unique_violation, as for a version taken: a conflict); then each row is numbered after the head,
# chained to it (the text hashed made by ledger/log/hashing.py but for recorded_at and seq), inserted,
# and the projector's holder notified. An event is the next of its stream when its version is 1 or
# the version before it is in the log (UNIQUE (stream, version) refuses one taken), which its own
# insert checks: a query of the streams' versions before the inserts, and a look for moved streams
# when the decision read none, cost the server 0.03-0.04 ms of the 0.26 an append of three events
# took. recorded_at never goes back along the log (a clock that stepped back, or a node's behind
# another's). The streams read come as a JSON object of their versions, the events as a JSON array
# of arrays (stream, version, event_id, type, schema_version, occurred_at, actor_id, data, and the
# text hashed before recorded_at, between it and seq, after seq): one text each to send, where
# arrays of every column cost the client more than the rest of the append; parsed once by the
# server (JSONB), where JSON is parsed again at every access.
APPEND_BODY = f"""
    DECLARE
        head_seq BIGINT := 0;
        head_hash TEXT := '{GENESIS_HASH}';
        head_recorded TEXT;
        moved TEXT;
        event JSONB;
        event_version BIGINT;
    BEGIN
        PERFORM pg_advisory_xact_lock({APPEND_LOCK});
        IF read <> '{{}}' THEN
            SELECT string_agg(quote_literal(r.key), ', ' ORDER BY r.key) INTO moved FROM jsonb_each_text(read) r
             WHERE coalesce((SELECT max(e.version) FROM events e WHERE e.stream = r.key), 0) <> r.value::BIGINT;
            IF moved IS NOT NULL THEN
                RAISE EXCEPTION 'streams [%] moved since the decision read them', moved USING ERRCODE = 'unique_violation';
            END IF;
        END IF;
        SELECT e.seq, e.hash, e.recorded_at INTO head_seq, head_hash, head_recorded
          FROM events e ORDER BY e.seq DESC LIMIT 1;
        IF NOT FOUND THEN
            head_seq := 0;
            head_hash := '{GENESIS_HASH}';
        END IF;
        new_recorded_at := greatest(recorded, head_recorded);
        new_seq := head_seq;
        FOR event IN SELECT jsonb_array_elements(appended) LOOP
            new_seq := new_seq + 1;
            new_prev_hash := head_hash;
            event_version := (event->>1)::BIGINT;
            new_hash := encode(sha256(convert_to(head_hash || (event->>8) || '"' || new_recorded_at || '"'
                || (event->>9) || new_seq || (event->>10), 'UTF8')), 'hex');
            INSERT INTO events SELECT new_seq, event->>2, event->>0, event_version, event->>3,
                (event->>4)::INTEGER, event->>5, new_recorded_at, (event->>6)::BIGINT, event->>7, head_hash, new_hash
             WHERE event_version = 1
                OR EXISTS (SELECT FROM events e WHERE e.stream = event->>0 AND e.version = event_version - 1);
            IF NOT FOUND THEN
                RAISE EXCEPTION 'stream % expected version %, got %', quote_literal(event->>0),
                    coalesce((SELECT max(e.version) FROM events e WHERE e.stream = event->>0), 0) + 1, event_version
                    USING ERRCODE = 'unique_violation';
            END IF;
            head_hash := new_hash;
            RETURN NEXT;
        END LOOP;
        PERFORM pg_notify('{APPENDED_CHANNEL}', '');
    END
"""
APPEND_SIGNATURE = "ledger_append(JSONB, JSONB, TEXT)"
APPEND_FUNCTION = f"""CREATE OR REPLACE FUNCTION ledger_append(read JSONB, appended JSONB, recorded TEXT)
    RETURNS TABLE (new_seq BIGINT, new_recorded_at TEXT, new_prev_hash TEXT, new_hash TEXT)
    LANGUAGE plpgsql AS $${APPEND_BODY}$$"""
APPEND_CALL = "SELECT * FROM ledger_append(CAST(? AS JSONB), CAST(? AS JSONB), ?)"
# The stream names given as one array parameter, as rows of a column `stream` compared byte by byte.
STREAMS = "unnest(CAST(? AS TEXT[])) AS s(stream)"


def as_appended(events: list[NewEvent], ids: list[str]) -> list[tuple] | None:
    """The events as ledger_append takes them, with their ids; None when a column holds a value not
    of its type, which only the chain's definition hashes (hashing.row_hash)."""
    if not all(type(e.version) is type(e.schema_version) is int and type(e.actor_id) in (int, type(None))
               for e in events):
        return None
    try:
        return [(e.stream, e.version, event_id, e.type, e.schema_version, e.occurred_at, e.actor_id, e.data_text,
                 *hashed_text_around((None, event_id, e.stream, e.version, e.type, e.schema_version, e.occurred_at,
                                      None, e.actor_id, e.data_text)))
                for event_id, e in zip(ids, events)]
    except TypeError:  # a text column holding something else
        return None


class PostgresEventStore(SQLEventStore):
    """The log as the `events` table of a PostgreSQL database, its writers queued on an advisory lock."""

    translated = staticmethod(translated)
    duplicate = errors.UniqueViolation
    begin_snapshot = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

    def __init__(self, conn: Connection):
        self.conn = conn
        self.horizon: int | None = None  # see stream_versions

    def create_schema(self) -> None:
        """Creates the log and its append function unless they exist; nodes starting together create
        them once, in turn under the append lock."""
        with self.transaction():
            log, append = self.conn.execute(
                "SELECT to_regclass('events') IS NOT NULL, (SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(?))",
                (APPEND_SIGNATURE,),
            ).fetchone()
            for statement in () if log else SCHEMA:
                self.conn.execute(statement)
            if append != APPEND_BODY:  # none yet (a log of an earlier release), or another release's
                self.conn.execute(APPEND_FUNCTION)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._under(APPEND_LOCK, joined_takes_it=False)

    def fold_transaction(self) -> contextlib.AbstractContextManager[None]:
        return self._under(FOLD_LOCK, joined_takes_it=True)

    @contextlib.contextmanager
    def _under(self, lock: int, joined_takes_it: bool) -> Iterator[None]:
        """A transaction that first takes the advisory lock `lock`, held until it ends. Inside one
        already, it joins it, taking the lock there too if `joined_takes_it`."""
        with translated():
            if self.conn.in_transaction:
                if joined_takes_it:
                    self.conn.execute("SELECT pg_advisory_xact_lock(?)", (lock,))
                yield
                return
            self.conn.execute_script(f"BEGIN; SELECT pg_advisory_xact_lock({int(lock)})")  # one round trip
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def append(self, events: Iterable[NewEvent]) -> list[StoredEvent]:
        """As the contract says, in one statement: the server's ledger_append keeps the contract's
        rules (versions, read-sets, the chain) under the append lock. Outside a transaction the
        statement is a transaction of its own, durable when it answers: one round trip, where
        reading the tip and inserting under a lock taken first made four."""
        read = events.read if isinstance(events, Decision) else {}
        events = list(events)
        ids = [uuid7().hex for _ in events]
        appended = as_appended(events, ids) if events else None
        if appended is None:  # nothing to append, or a column of another type: hashed by the definition
            return super().append(Decision(events, read))
        recorded_at = clock.stored(clock.now())
        with translated():
            try:
                rows = self.conn.execute(APPEND_CALL, (canonical(read), canonical(appended), recorded_at)).fetchall()
            except self.duplicate as error:
                raise StreamConflict(error.diag.message_primary or str(error)) from error
        return [StoredEvent(seq, event_id, e.stream, e.version, e.type, e.schema_version, e.occurred_at, recorded,
                            e.actor_id, e.data, prev_hash, hash_)
                for (seq, recorded, prev_hash, hash_), event_id, e in zip(rows, ids, events)]

    def insert_rows(self, rows: list[tuple]) -> None:
        """As the contract says; the commit then notifies the projector's holder (postgres/lease.py).
        A notification travels with the rows, and is dropped with them if they are rolled back.
        It is sent first: in a pipeline, a statement sent after the rows may raise their refusal,
        which must reach the caller as the rows' own (a conflict)."""
        with translated():
            self.conn.execute(f"NOTIFY {APPENDED_CHANNEL}")
        super().insert_rows(rows)

    def batched(self) -> contextlib.AbstractContextManager:
        return self.conn.pipeline()

    def prepare_group_commits(self) -> None:
        """Nothing to ready: a savepoint costs the server no file of its own."""

    @translated()
    def renew_if_lost(self) -> bool:
        if not self.conn.lost:
            return False
        self.conn.renew()
        return True

    @translated()
    def forgo_durability(self) -> None:
        self.conn.execute("SET synchronous_commit = off")

    def close(self) -> None:
        """Holds nothing of its own: the append lock lasts a transaction, and the connection is its owner's."""

    def sync_log(self) -> None:
        """Nothing to flush: every commit waited for the server's log to reach its disk (synchronous_commit)."""

    @translated()
    def tip(self, streams: Iterable[str]) -> tuple[int, str, dict[str, int]]:
        """As the contract says, in one query: the head's row (no stream), and a row per stream."""
        streams = list(dict.fromkeys(streams))
        rows = self.conn.execute(
            "SELECT NULL, seq, hash FROM (SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1) head"
            f" UNION ALL SELECT s.stream, ({STREAM_VERSION.format(stream='s.stream', bound='')}), NULL"
            f" FROM {STREAMS}",
            (streams,),
        ).fetchall()
        seq, hash_ = next(((seq, hash_) for stream, seq, hash_ in rows if stream is None), (0, GENESIS_HASH))
        return seq, hash_, {stream: version or 0 for stream, version, _ in rows if stream is not None}

    @translated()
    def stream_versions(self, streams: Iterable[str]) -> dict[str, int]:
        """As the contract says, in one query, each stream's version read off its index (STREAM_VERSION)."""
        streams = list(dict.fromkeys(streams))
        if not streams:
            return {}
        # The horizon a parameter: one prepared statement, not one parsed and planned per decision.
        bound, parameters = ("", (streams,)) if self.horizon is None else (" AND e.seq <= ?", (self.horizon, streams))
        rows = self.conn.execute(
            f"SELECT s.stream, ({STREAM_VERSION.format(stream='s.stream', bound=bound)}) FROM {STREAMS}", parameters
        )
        return {stream: version or 0 for stream, version in rows}
