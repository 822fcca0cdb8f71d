"""List pages and counts at scale, in-process: usage records and user usages, as staff and as a
provider's owner (who sees every record through a role, as a site agent's token does).

A page should cost about the same whatever the number of records: it is read off an index. A
count grows with the matching rows; it is kept until rows change (projections/runner.py), so
each page is timed with its count kept, right after a report that changes a record's values
(a site agent's usual write), and right after a report that makes a new record (only the rows
added since are counted to the count kept). Milliseconds, median of runs.

    .venv/bin/python tests/bench/bench_lists.py --records 1000000 --user-usages 400000
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from api import create_app  # noqa: E402
from ledger.commands import usage  # noqa: E402
from ledger.cli import load_catalog  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from ledger.log import events
from ledger.rules.access import Caller  # noqa: E402
from projections import runner  # noqa: E402
from tests.bench.bench_http import OFFERING, OWNER_TOKEN, TOKEN, catalog, copy_ledger, fill, resource_uuid  # noqa: E402

LISTS = {
    "usage records": "/api/marketplace-component-usages/",
    "user usages": "/api/marketplace-component-user-usages/",
}
QUERIES = {"no filter": "", "offering + type": f"offering_uuid={OFFERING}&type=cpu", "username": "username=user-1"}


def fill_user_usages(ledger: Ledger, count: int) -> None:
    """Two users' shares of every k-th record, so that `count` of them spread over every month."""
    records = [row[0] for row in ledger.conn.execute("SELECT uuid FROM component_usages ORDER BY id")]
    step = max(1, len(records) * 2 // max(count, 1))
    batch = []
    for n, record in enumerate(records[::step][: count // 2]):
        for name in (f"user-{n % 50}", f"user-{n % 50 + 50}"):
            data = {"component_usage_uuid": record, "username": name, "usage": f"{n % 97}.00", "user_uuid": None}
            batch.append(events.new(events.user_usage_stream(record, name), 1, "UserUsageReported", data,
                                    "2026-01-01T00:00:00.000000Z", 1))
        if len(batch) >= 20000:
            with ledger.store.transaction():
                runner.apply(ledger.conn, ledger.store.append(batch))
            batch = []
    with ledger.store.transaction():
        runner.apply(ledger.conn, ledger.store.append(batch))


def median_ms(action, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--user-usages", type=int, default=400_000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--filled", type=Path, help="a database filled by an earlier run with the same sizes"
                        " (kept there if missing), copied instead of filling again")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-lists-"))
    path = folder / "ledger.db"
    if args.filled and args.filled.exists():
        copy_ledger(str(args.filled), str(path))
    else:
        ledger = Ledger(str(path))
        ledger.init()
        load_catalog(ledger, json.dumps(catalog(args.resources)))
        fill(ledger, args.resources, args.records)
        fill_user_usages(ledger, args.user_usages)
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ledger.close()
        if args.filled:
            copy_ledger(str(path), str(args.filled))

    app = create_app({"DATABASE": str(path), "ROLLOVER_SECONDS": 0})
    client = app.test_client()
    writer = Ledger(str(path))
    staff = Caller(id=1, username="staff", is_staff=True)

    made = iter(range(args.resources))

    def update() -> None:
        item = usage.UsageItem(type="ram", amount="1.00")
        usage.set_usage(writer, staff, usage.SetUsage(items=[item], resource_uuid=resource_uuid(0)))

    def make() -> None:  # the first report of this month of another resource: a new record
        item = usage.UsageItem(type="gpu", amount="1.00")
        usage.set_usage(writer, staff, usage.SetUsage(items=[item], resource_uuid=resource_uuid(next(made))))

    print(f"\n{args.records} usage records, {args.user_usages} user usages; ms per page of 10, median of {args.runs}")
    print(f"{'list':14} {'query':16} {'caller':15} {'page':>7} {'after an update':>16} {'after a new record':>19}"
          f" {'matching':>9}")
    update()
    for list_name, path_prefix in LISTS.items():
        for query_name, query in QUERIES.items():
            if list_name == "usage records" and query_name == "username":
                continue
            for caller, key in (("staff", TOKEN), ("provider owner", OWNER_TOKEN)):
                url = f"{path_prefix}?{query}&x-auth-token={key}"
                response = client.get(url)
                assert response.status_code == 200, response.get_json()
                kept = median_ms(lambda: client.get(url), args.runs)
                updated = median_ms(lambda: (update(), client.get(url)), args.runs) - median_ms(update, args.runs)
                counted = median_ms(lambda: (make(), client.get(url)), args.runs) - median_ms(make, args.runs)
                print(f"{list_name:14} {query_name:16} {caller:15} {kept:7.1f} {updated:16.1f} {counted:19.1f}"
                      f" {response.headers['X-Result-Count']:>9}")
    writer.close()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
