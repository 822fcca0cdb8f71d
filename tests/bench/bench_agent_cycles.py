"""The log's growth over a day of site agent cycles, with and without unchanged reports appending nothing.

A day is 48 cycles, one every 30 minutes, as the Waldur site agent reports by default. Each cycle
reports every resource as the agent does: `set_usage` with every component, then `set_user_usages`
for every user of every component, dated the start of the billing month. Between cycles the jobs of
a fraction of the resources (`--changing`) ran on: their users' usage grew; the rest report the same
figures again. "before" is the ledger with every report appended (the check of unchanged reports
switched off in this process), "after" the ledger as it is; both in the same run.

    .venv/bin/python tests/bench/bench_agent_cycles.py
    .venv/bin/python tests/bench/bench_agent_cycles.py --resources 50 --users 20 --changing 0,0.1,1
"""

import argparse
import datetime as dt
import json
import os
import random
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ledger.commands import usage  # noqa: E402
from ledger.cli import load_catalog  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from ledger.log import events
from ledger.rules.access import Caller  # noqa: E402

PROVIDER, CLIENT = uuid.UUID(int=1).hex, uuid.UUID(int=2).hex
PROJECT, OFFERING = uuid.UUID(int=3).hex, uuid.UUID(int=4).hex
COMPONENTS = ("cpu", "mem")
CYCLES, CYCLE = 48, dt.timedelta(minutes=30)
DAY = dt.datetime(2026, 3, 15, tzinfo=dt.timezone.utc)
OWNER = Caller(id=1, username="owner", customers_owned=frozenset({PROVIDER}))


def catalog(resources: int) -> dict:
    return {
        "users": [{"id": 1, "username": "owner", "token": "owner-token"}],
        "customers": [{"uuid": PROVIDER, "name": "Provider"}, {"uuid": CLIENT, "name": "Client"}],
        "projects": [{"uuid": PROJECT, "name": "Science", "customer_uuid": CLIENT}],
        "offerings": [{"uuid": OFFERING, "name": "HPC", "customer_uuid": PROVIDER, "components": [
            {"type": name, "name": name, "measured_unit": "h", "billing_type": "usage"} for name in COMPONENTS]}],
        "resources": [
            {"uuid": uuid.UUID(int=1000 + index).hex, "name": f"alloc-{index}", "offering_uuid": OFFERING,
             "project_uuid": PROJECT, "state": "OK", "backend_id": f"hpc_{index}",
             "plan_periods": [{"uuid": uuid.UUID(int=5000 + index).hex, "start": "2026-01-01T00:00:00Z"}]}
            for index in range(resources)
        ],
        "roles": [{"username": "owner", "scope": "customer", "scope_uuid": PROVIDER, "role": "owner"}],
    }


def report(ledger: Ledger, resource: str, usages: dict, period_start: dt.datetime) -> None:
    """One agent report of a resource: its totals, then every user's share of each component."""
    totals = {name: sum(by_component[name] for by_component in usages.values()) for name in COMPONENTS}
    usage.set_usage(ledger, OWNER, usage.SetUsage(
        items=[usage.UsageItem(name, f"{amount:.2f}") for name, amount in totals.items()],
        resource_uuid=resource, date=period_start,
    ))
    for name in COMPONENTS:
        record = events.usage_record_uuid(resource, name, period_start.date().isoformat())
        items = [usage.UserUsageItem(user, f"{by_component[name]:.2f}", date=period_start)
                 for user, by_component in usages.items()]
        usage.set_user_usages(ledger, OWNER, usage.SetUserUsages(record, items, bulk=True))


def day_of_cycles(resources: int, users: int, changing: float, seed: int) -> int:
    """The events a day of cycles appends to a fresh ledger."""
    rng = random.Random(seed)
    document = catalog(resources)
    with tempfile.TemporaryDirectory() as directory:
        os.environ["LEDGER_NOW"] = DAY.isoformat()
        ledger = Ledger(str(Path(directory) / "ledger.db"))
        ledger.init()
        load_catalog(ledger, json.dumps(document))
        usages = {r["uuid"]: {f"user{u}": dict.fromkeys(COMPONENTS, 0) for u in range(users)}
                  for r in document["resources"]}
        before = ledger.store.count()
        period_start = DAY.replace(day=1)
        for cycle in range(CYCLES):
            os.environ["LEDGER_NOW"] = (DAY + cycle * CYCLE).isoformat()
            for resource, by_user in usages.items():
                if cycle == 0 or rng.random() < changing:
                    for by_component in by_user.values():
                        for name in COMPONENTS:
                            by_component[name] += rng.randint(0, 120)
                report(ledger, resource, by_user, period_start)
        appended = ledger.store.count() - before
        ledger.close()
        return appended


def every_report_appended() -> None:
    """From now on in this process, no report is taken as unchanged: the ledger as it was."""
    usage.report_unchanged = lambda data, record: False
    usage.user_usage_unchanged = lambda amount, held: False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--users", type=int, default=10, help="users per resource")
    parser.add_argument("--changing", default="0,0.2,1",
                        help="fractions of resources whose usage grows between cycles (comma-separated)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    fractions = [float(text) for text in args.changing.split(",")]
    after = {f: day_of_cycles(args.resources, args.users, f, args.seed) for f in fractions}
    every_report_appended()
    before = {f: day_of_cycles(args.resources, args.users, f, args.seed) for f in fractions}
    print(f"{CYCLES} cycles a day, {args.resources} resources x {len(COMPONENTS)} components x {args.users} users")
    print(f"{'changing':>9} {'events/day before':>18} {'events/day after':>17} {'after/before':>13}")
    for f in fractions:
        print(f"{f:>9.2f} {before[f]:>18} {after[f]:>17} {after[f] / before[f]:>13.3f}")


if __name__ == "__main__":
    main()
