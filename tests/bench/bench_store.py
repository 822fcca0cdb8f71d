"""Append throughput of the event store against raw sqlite3 inserts of the same rows, in one run.

Both sides write the same table (the store's own schema: columns, indexes, triggers) with
the same pragmas (WAL, synchronous from LEDGER_SYNC), in a fresh file each. "single" is one
event per transaction; "batched" is BATCH events per append (raw: per executemany).
The raw side inserts exactly the rows the store wrote, read back from the store's file.

    LEDGER_SYNC=full   .venv/bin/python tests/bench/bench_store.py
    LEDGER_SYNC=normal .venv/bin/python tests/bench/bench_store.py --single 5000 --batched 200000

With few streams (`--streams 3`), each gains thousands of versions, as a record reported every
half hour does over a month: an append reads its streams' versions under the writer lock, and
must not read every version of them.
"""

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.backends.sqlite.connection import connect  # noqa: E402
from ledger.log.records import COLUMNS, NewEvent  # noqa: E402
from ledger.backends.sqlite.store import SQLiteEventStore  # noqa: E402

STREAMS = 500


def new_events(count: int, first: int = 0, streams: int = STREAMS) -> list[NewEvent]:
    """Usage reports numbered first…first+count-1, spread over `streams` streams, each stream's versions in order."""
    return [
        NewEvent(
            stream=f"usage/{i % streams:032x}/cpu/2026-03", version=i // streams + 1, type="UsageReported",
            data={
                "resource_uuid": f"{i % streams:032x}", "type": "cpu", "billing_period": "2026-03-01",
                "plan_period_uuid": f"{i % 7:032x}", "amount": f"{i % 100000}.25", "description": "nightly report",
                "missing_usage_policy": "none",
            },
            occurred_at="2026-03-15T12:00:00.000000Z", actor_id=3,
        )
        for i in range(first, first + count)
    ]


def open_store(path: str) -> SQLiteEventStore:
    store = SQLiteEventStore(connect(path))
    store.create_schema()
    return store


def open_raw(path: str) -> sqlite3.Connection:
    """A plain sqlite3 connection with the store's pragmas, on a file with the store's schema."""
    open_store(path).conn.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    sync = "NORMAL" if os.environ.get("LEDGER_SYNC", "full").lower() == "normal" else "FULL"
    conn.execute(f"PRAGMA synchronous={sync}")
    return conn


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(workdir: str, name: str, count: int, batch: int, streams: int = STREAMS) -> tuple[float, float]:
    """Seconds for the store and for raw inserts of the same `count` events over `streams` streams,
    `batch` per transaction."""
    events = new_events(count, streams=streams)
    store = open_store(f"{workdir}/{name}-store.db")
    batches = [events[i:i + batch] for i in range(0, count, batch)]
    store_seconds = timed(lambda: [store.append(chunk) for chunk in batches])
    rows = [tuple(e.row()[c] for c in COLUMNS) for e in store.read()]
    store.conn.close()
    assert len(rows) == count

    raw = open_raw(f"{workdir}/{name}-raw.db")
    insert = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"

    def insert_raw():
        for i in range(0, count, batch):
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(insert, rows[i:i + batch])
            raw.execute("COMMIT")

    raw_seconds = timed(insert_raw)
    raw.close()
    return store_seconds, raw_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="events appended one per transaction")
    parser.add_argument("--batched", type=int, default=100_000, help="events appended in batches")
    parser.add_argument("--batch", type=int, default=1000, help="events per batched append")
    parser.add_argument("--streams", type=int, default=STREAMS, help="streams the events are spread over")
    parser.add_argument("--dir", default=None, help="where the database files go (default: a temporary directory)")
    args = parser.parse_args()

    sync = "normal" if os.environ.get("LEDGER_SYNC", "full").lower() == "normal" else "full"
    print(f"LEDGER_SYNC={sync}  sqlite {sqlite3.sqlite_version}  python {sys.version.split()[0]}"
          f"  streams {args.streams}")
    print(f"{'mode':<8} {'events':>8} {'store ev/s':>12} {'raw ev/s':>12} {'store/raw':>10}")
    with tempfile.TemporaryDirectory(dir=args.dir) as workdir:
        for name, count, batch in (("single", args.single, 1), ("batched", args.batched, args.batch)):
            store_seconds, raw_seconds = measure(workdir, name, count, batch, args.streams)
            store_rate, raw_rate = count / store_seconds, count / raw_seconds
            print(f"{name:<8} {count:>8} {store_rate:>12,.0f} {raw_rate:>12,.0f} {store_rate / raw_rate:>10.2f}")


if __name__ == "__main__":
    main()
