"""In-process command throughput: set_usage through the ledger layer (no HTTP) against the
`eventsourcing` library's SQLite application doing get-change-save of one aggregate per record.

Both write to a fresh SQLite file in WAL mode with SQLite's default synchronous=FULL (the
ledger's default too), one transaction per command: a set_usage of three items is one
transaction for the ledger and three get-change-save cycles for the eventsourcing application.
Rates are usage records reported per second.

    .venv/bin/pip install -e '.[bench]' && .venv/bin/python tests/bench/bench_commands.py --commands 2000
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eventsourcing.application import AggregateNotFoundError, Application  # noqa: E402
from eventsourcing.domain import Aggregate, event  # noqa: E402

from ledger import catalog, usage  # noqa: E402
from ledger.access import Caller  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from tests.bench.bench_rebuild import catalog_document, resource_uuid  # noqa: E402

TYPES = ("cpu", "ram", "gpu")
NOW = "2026-11-15T12:00:00Z"


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


def commands(count: int, resources: int, seed: int = 7) -> list[tuple[str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    return [
        (resource_uuid(rng.randrange(resources)), [(kind, f"{rng.randrange(1000)}.25") for kind in TYPES])
        for _ in range(count)
    ]


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


def run_eventsourcing(folder: str, work) -> float:
    app = UsageApplication(env={
        "PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(folder, "es.db"),
    })
    started = time.perf_counter()
    for resource, items in work:
        for kind, amount in items:
            app.report(resource, kind, "2026-11-01", amount)
    elapsed = time.perf_counter() - started
    app.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--resources", type=int, default=1000)
    args = parser.parse_args()
    os.environ["LEDGER_NOW"] = NOW
    work = commands(args.commands, args.resources)
    records = sum(len(items) for _, items in work)
    with tempfile.TemporaryDirectory() as folder:
        ours = run_ledger(folder, work, args.resources)
        theirs = run_eventsourcing(folder, work)
    print(f"\n{args.commands} set_usage commands of {len(TYPES)} items ({records} record reports), synchronous=FULL")
    print(f"{'what':44} {'seconds':>8} {'records/s':>10}")
    print(f"{'ledger set_usage (one transaction a command)':44} {ours:8.2f} {records / ours:10.0f}")
    print(f"{'eventsourcing get-change-save per record':44} {theirs:8.2f} {records / theirs:10.0f}")
    print(f"ledger / eventsourcing: {theirs / ours:.1f}x (target >= 5x)")


if __name__ == "__main__":
    main()
