"""In-process command throughput: set_usage through the ledger layer (no HTTP) against the
`eventsourcing` library's SQLite application doing get-change-save of one aggregate per record.

Both write to a fresh SQLite file in WAL mode with SQLite's default synchronous=FULL (the
ledger's default too), one transaction per command: a set_usage of three items is one
transaction for the ledger and three get-change-save cycles for the eventsourcing application
(its default application: no snapshots, no aggregate cache; and, for comparison, the same with
its aggregate cache). Rates are usage records reported per second.

Site agents report the same records again and again within a month (set_usage replaces the
value), so the workloads are rounds in which every resource reports its three components:

- first reports: one round over many resources, each record reported once;
- a month of daily reports: 30 rounds;
- a week of hourly reports: 168 rounds.

An aggregate's `get` replays all of its events, so the eventsourcing rate falls as records
gather reports; the ledger reads only each stream's last version, off an index.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python tests/bench/bench_commands.py
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eventsourcing.application import AggregateNotFoundError, Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

from ledger.commands import usage  # noqa: E402
from ledger.commands import catalog
from ledger.database import Ledger  # noqa: E402
from ledger.rules.access import Caller  # noqa: E402
from tests.bench.bench_rebuild import catalog_document, resource_uuid  # noqa: E402

TYPES = ("cpu", "ram", "gpu")


class UsageRecord(Aggregate):
    """One usage record as an eventsourcing aggregate: created once, then reported again and again."""

    @event("Opened")
    def __init__(self, resource_uuid: str, component_type: str, billing_period: str):
        self.resource_uuid, self.component_type, self.billing_period = resource_uuid, component_type, billing_period
        self.amount, self.description, self.policy = "0.00", "", "none"

    @staticmethod
    def create_id(resource_uuid: str, component_type: str, billing_period: str) -> uuid.UUID:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"usage/{resource_uuid}/{component_type}/{billing_period}")

    @event("Reported")
    def report(self, amount: str, description: str, policy: str):
        self.amount, self.description, self.policy = amount, description, policy


class UsageApplication(Application):
    def report(self, resource: str, component_type: str, billing_period: str, amount: str) -> None:
        record_id = UsageRecord.create_id(resource, component_type, billing_period)
        try:
            record = self.repository.get(record_id)
        except AggregateNotFoundError:
            record = UsageRecord(resource, component_type, billing_period)
        record.report(amount, "nightly", "none")
        self.save(record)


WORKLOADS = {  # name: (resources, rounds)
    "first reports": (3000, 1),
    "a month of daily reports": (100, 30),
    "a week of hourly reports": (10, 168),
}


def rounds(resources: int, count: int, seed: int = 7) -> list[tuple[str, list[tuple[str, str]]]]:
    """`count` rounds in which each resource, in a shuffled order, reports every component."""
    rng = random.Random(seed)
    work = []
    for _ in range(count):
        order = list(range(resources))
        rng.shuffle(order)
        work += [(resource_uuid(i), [(kind, f"{rng.randrange(1000)}.25") for kind in TYPES]) for i in order]
    return work


def run_ledger(folder: str, work, resources: int) -> float:
    ledger = Ledger(os.path.join(folder, "ledger.db"), background_checkpoints=True)
    ledger.init()
    catalog.load(ledger, json.dumps(catalog_document(resources)))
    staff = Caller(id=1, username="staff", is_staff=True)
    started = time.perf_counter()
    for resource, items in work:
        items = [usage.UsageItem(type=kind, amount=amount, description="nightly") for kind, amount in items]
        usage.set_usage(ledger, staff, usage.SetUsage(items=items, resource_uuid=resource))
    elapsed = time.perf_counter() - started
    ledger.close()
    return elapsed


def run_eventsourcing(folder: str, work, cached: bool = False) -> float:
    """With `cached`, the application keeps aggregates in memory (AGGREGATE_CACHE_MAXSIZE), so a
    get reads only the events after the cached version instead of replaying them all."""
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(folder, f"es-{cached}.db")}
    if cached:
        env["AGGREGATE_CACHE_MAXSIZE"] = "100000"
    app = UsageApplication(env=env)
    started = time.perf_counter()
    for resource, items in work:
        for kind, amount in items:
            app.report(resource, kind, "2026-11-01", amount)
    elapsed = time.perf_counter() - started
    app.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every workload's resources")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each application per workload, alternated")
    args = parser.parse_args()
    os.environ.pop("LEDGER_NOW", None)  # the real clock: every report has its own time, as in production
    results = []
    for name, (resources, count) in WORKLOADS.items():
        resources = max(1, round(resources * args.scale))
        work = rounds(resources, count)
        records = sum(len(items) for _, items in work)
        runs = []  # (ours, theirs, cached) seconds; rounds alternate, so a slow spell falls on all three
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory() as folder:
                runs.append((run_ledger(folder, work, resources), run_eventsourcing(folder, work),
                             run_eventsourcing(folder, work, cached=True)))
        results.append((f"{name} ({resources} resources x {count})", records, runs))
    print(f"\nset_usage commands of {len(TYPES)} items, synchronous=FULL; records/s;"
          f" medians of {args.rounds} rounds, and the spread of the ratios")
    print(f"{'workload':46} {'records':>8} {'ledger':>8} {'eventsourcing':>14} {'ratio':>6} {'rounds':>11}"
          f" {'with its cache':>15} {'ratio':>6}")
    for name, records, runs in results:
        ours, theirs, cached = (median(run[i] for run in runs) for i in range(3))
        ratios = sorted(run[1] / run[0] for run in runs)
        print(f"{name:46} {records:8d} {records / ours:8.0f} {records / theirs:14.0f} {median(ratios):5.1f}x"
              f" {f'{ratios[0]:.1f}-{ratios[-1]:.1f}x':>11} {records / cached:15.0f}"
              f" {median(run[2] / run[0] for run in runs):5.1f}x")
    print("target: ledger >= 5x eventsourcing's SQLite application")


if __name__ == "__main__":
    main()
