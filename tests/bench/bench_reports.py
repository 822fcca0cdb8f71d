"""Period totals (`ledger report`, /api/usage-totals/, the web page) at scale, in-process, against
SQLite's own GROUP BY of the same month summed as floats (what a hand-written query costs; inexact).

The report reads every record of the month and sums them as decimals in Python; the ratio says what
exact sums and the catalog's names cost over the bare aggregate. Milliseconds, median of runs.

    .venv/bin/python tests/bench/bench_reports.py --records 1000000
"""

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from api import create_app  # noqa: E402
from ledger.rules import clock  # noqa: E402
from ledger.cli import load_catalog  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from projections import reports  # noqa: E402
from tests.bench.bench_http import CLIENT, OWNER_TOKEN, PROVIDER, catalog, fill  # noqa: E402
from tests.bench.bench_lists import median_ms  # noqa: E402

BASELINE = ("SELECT customer_uuid, type, SUM(CAST(usage AS REAL)), COUNT(*) FROM component_usages"
            " WHERE billing_period = ? GROUP BY customer_uuid, type")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="bench-reports-")) / "ledger.db"
    ledger = Ledger(str(path))
    ledger.init()
    load_catalog(ledger, json.dumps(catalog(args.resources)))
    fill(ledger, args.resources, args.records)
    conn = ledger.conn
    month = clock.previous_period(clock.billing_period(clock.now()))
    in_month = conn.execute("SELECT COUNT(*) FROM component_usages WHERE billing_period = ?",
                            (month.isoformat(),)).fetchone()[0]
    last = clock.billing_period(clock.now())
    first = dt.date(last.year - 1, last.month, 1)
    # The bench's provider owner: every record is visible through the provider's scope.
    owner_scopes = {"customer_uuid": [PROVIDER], "project_uuid": [], "provider_uuid": [PROVIDER], "offering_uuid": []}
    app = create_app({"DATABASE": str(path), "TESTING": True, "ROLLOVER_SECONDS": 0})
    client = app.test_client()
    client.post("/sign-in", data={"token": OWNER_TOKEN})
    baseline = median_ms(lambda: conn.execute(BASELINE, (month.isoformat(),)).fetchall(), args.runs)
    timings = {
        "report --by customer (staff)": lambda: reports.period_totals(conn, None, month, "customer"),
        "report --by resource (staff)": lambda: reports.period_totals(conn, None, month, "resource"),
        "report --by customer (provider owner)": lambda: reports.period_totals(conn, owner_scopes, month, "customer"),
        "a customer's 12-month chart data": lambda: reports.monthly_totals(conn, None, {"customer_uuid": CLIENT},
                                                                            first, last),
        "the overview page (3 totals, provider owner)": lambda: client.get(f"/?period={month:%Y-%m}").get_data(),
    }
    print(f"{args.records} records, {in_month} in {month:%Y-%m}; baseline (SQLite GROUP BY, float sums):"
          f" {baseline:.1f} ms")
    print(f"{'':46} {'ms':>9} {'x baseline':>11}")
    for name, action in timings.items():
        elapsed = median_ms(action, args.runs)
        print(f"{name:46} {elapsed:9.1f} {elapsed / baseline:11.2f}")
    ledger.close()


if __name__ == "__main__":
    main()
