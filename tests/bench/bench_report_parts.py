"""What a usage report costs on PostgreSQL, part by part, in-process (no HTTP), against the bare
insert that `bench_http.py --db postgresql` compares set_usage with. Each part's CPU is that of
this thread (the client) and of the server process behind its session (read from /proc: the
embedded server runs on this machine), per report:

- insert: the bare insert's statement (tests/bench/baseline_app.py), one row in autocommit;
- report: set_usage through the ledger layer, three items on a random resource, as a request
  makes it (its decision's read, which reads the request's arrival too, the decision, and the
  append by the server-side ledger_append, a durable commit);
- fold: the projector folding those reports into the views (runner.catch_up), `--batch` reports
  a fold, as a busy projector gathers them.

One report at a time, so each part also pays the server's waking for it; under load (8
connections, `bench_http.py`) every part costs less, the insert too, and a fold carries more
reports. HTTP and the server around a request cost both sides alike; `bench_http.py` measures
whole requests. The parts say what the ledger's own work is against the insert's: set_usage
reaches half the insert's rate over HTTP only if the report and its fold together cost no more
than the insert and the HTTP work around it, which both sides pay.

    .venv/bin/python tests/bench/bench_report_parts.py --records 100000
"""

import argparse
import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger.backends import Writes  # noqa: E402
from ledger.commands import usage  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from ledger.rules.access import Caller  # noqa: E402
from projections import runner  # noqa: E402
from tests.bench.bench_http import durable_postgres, filled, resource_uuid  # noqa: E402

STAFF = Caller(id=1, username="staff", is_staff=True)


class Meter:
    """CPU seconds spent in its blocks by this thread and by one server process."""

    def __init__(self, server_pid: int):
        self.stat = Path(f"/proc/{server_pid}/stat")
        self.client = self.server = 0.0

    def server_seconds(self) -> float:
        fields = self.stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @contextlib.contextmanager
    def measured(self):
        client, server = time.thread_time(), self.server_seconds()
        yield
        self.client += time.thread_time() - client
        self.server += self.server_seconds() - server


class Unfolded:
    """The process's projector as a writer sees it (woken after each write); the fold is measured apart."""

    def wake(self) -> None:
        pass


def backend_pid(conn) -> int:
    return conn.execute("SELECT pg_backend_pid()").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--reports", type=int, default=5_000, help="reports measured (after a tenth as many unmeasured)")
    parser.add_argument("--batch", type=int, default=5, help="reports a fold")
    args = parser.parse_args()

    postgres = durable_postgres()
    db, baseline_db = postgres.new_database(), postgres.new_database()
    filled(db, args.resources, args.records)
    writer = Ledger(db, projector=Unfolded())
    folding = Ledger(db, sync_on_commit=False, writes=Writes.VIEWS)
    assert folding.lease.acquire()  # the projector's: only the folds below fold
    writer.roll_periods()  # months the clock entered since the fill start now, not in the first fold measured
    runner.catch_up(folding.store)
    baseline = psycopg.connect(baseline_db, autocommit=True, options="-c synchronous_commit=on")
    baseline.execute("CREATE TABLE reports (id BIGSERIAL PRIMARY KEY, body TEXT)")
    servers = {"insert": backend_pid(baseline), "report": backend_pid(writer.conn), "fold": backend_pid(folding.conn)}
    rng = random.Random(1)
    warmup, events = args.reports // 10, 0
    for start in range(-warmup, args.reports, args.batch):
        if start <= 0:  # counted from the end of the warm-up
            meters = {name: Meter(pid) for name, pid in servers.items()}
        writer.arrive(usage.SET_USAGE_UNWAITED)  # a request after a fold finds the views moved
        for resource in rng.sample(range(args.resources), args.batch):  # distinct: each decides on folded views
            items = [usage.UsageItem("cpu", f"{rng.randrange(1000)}.25"), usage.UsageItem("ram", str(rng.randrange(64))),
                     usage.UsageItem("gpu", "1.5", "nightly")]
            with meters["report"].measured():
                writer.presume_arrival(usage.SET_USAGE_UNWAITED)  # as a request does (api/__init__.py)
                usage.set_usage(writer, STAFF, usage.SetUsage(items, resource_uuid=resource_uuid(resource)))
            body = str([{"type": item.type, "amount": item.amount} for item in items])
            with meters["insert"].measured():
                baseline.execute("INSERT INTO reports (body) VALUES (%s)", (body,))
        with meters["fold"].measured():
            folded = runner.catch_up(folding.store)
        events += folded if start >= 0 else 0

    per = {name: (1000 * meter.client / args.reports, 1000 * meter.server / args.reports) for name, meter in meters.items()}
    insert = sum(per["insert"])
    print(f"\n{args.reports} reports of three items on PostgreSQL ({events / args.reports:.2f} events each: an item"
          f" that says what its record holds appends none), {args.records} records, folds of {args.batch} reports;"
          " CPU ms a report")
    print(f"{'part':34} {'client':>7} {'server':>7} {'total':>7} {'x insert':>9}")
    rows = [("insert (bare, one row)", *per["insert"]), ("report (decision read, append)", *per["report"]),
            ("fold", *per["fold"]),
            ("report and its fold", per["report"][0] + per["fold"][0], per["report"][1] + per["fold"][1])]
    for name, client, server in rows:
        print(f"{name:34} {client:7.3f} {server:7.3f} {client + server:7.3f} {(client + server) / insert:9.1f}")
    writer.close()
    folding.close()
    baseline.close()


if __name__ == "__main__":
    main()
