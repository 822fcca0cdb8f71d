"""Reads under write load on `ledger serve`: latencies beside readers alone, and reads of acknowledged writes checked.

Writes append and one projector folds the views; every request first waits until the views
reach the log's head. This measures what that wait costs readers while writers write, and
checks what it buys: each writer thread reports the usage of a resource of its own and, after
every 201, retrieves the record (through the other server with `--servers 2`); a read that does
not show the amount just acknowledged is a violation. Reader threads meanwhile list a filtered
page (`offering_uuid` + `type`, 10 a page) and retrieve a record of the filled database.

Two phases of `--seconds` each on the same servers: readers alone, then readers and writers
together. Printed: read p50/p99 of both phases and their ratio, set_usage p50/p99, the rates,
and the violations (exits 1 unless there are none). Each request has a connection of its own,
so that the load spreads over the workers (as in bench_http.py).

    .venv/bin/python tests/bench/bench_mixed.py --records 100000 --seconds 15
    .venv/bin/python tests/bench/bench_mixed.py --records 100000 --seconds 15 --servers 2
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median, quantiles

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger.log import events  # noqa: E402
from ledger.cli import DEFAULT_WORKERS, load_catalog  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from ledger.rules import clock
from tests.bench.bench_http import OFFERING, TOKEN, TYPES, catalog, fill, resource_uuid  # noqa: E402
from tests.serving import USAGE_RECORD, LedgerServer, Report, call, read_usage, send  # noqa: E402


class Load:
    """Latencies (seconds) and counts gathered by the threads of one phase."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reads: list[float] = []
        self.writes: list[float] = []
        self.failed_reads = self.failed_writes = self.read_backs = 0
        self.violations: list[tuple[str, int | None, str | None]] = []  # (tag, status, usage read back)

    def add(self, latencies: list[float], latency: float) -> None:
        with self.lock:
            latencies.append(latency)


def timed(request) -> tuple[float, tuple]:
    started = time.perf_counter()
    answer = request()
    return time.perf_counter() - started, answer


def reader(urls: list[str], resources: int, period: str, load: Load, stop: threading.Event, seed: int) -> None:
    """Alternates a filtered page and a retrieve of a random filled record, on the servers in turn."""
    rng, number = random.Random(seed), 0
    listing = f"/api/marketplace-component-usages/?offering_uuid={OFFERING}&type=cpu&page_size=10"
    while not stop.is_set():
        url = urls[number % len(urls)]
        if number % 2:
            record = events.usage_record_uuid(resource_uuid(rng.randrange(resources)), rng.choice(TYPES), period)
            path = USAGE_RECORD.format(record)
        else:
            path = listing
        latency, (status, _) = timed(lambda: call(url, "GET", path, TOKEN, timeout=60))
        if status == 200:
            load.add(load.reads, latency)
        else:
            with load.lock:
                load.failed_reads += 1
        number += 1


def writer(urls: list[str], thread: int, period: str, load: Load, stop: threading.Event) -> None:
    """Reports its own resource's usage through the servers in turn; reads each 201 back through the next server."""
    resource, number = resource_uuid(thread), 0
    record = events.usage_record_uuid(resource, "cpu", period)
    while not stop.is_set():
        amount = f"{number}.{thread % 100:02d}"
        report = Report(f"mixed-{thread}-{number}", resource, (("cpu", amount),))
        latency, answer = timed(lambda: send(urls[number % len(urls)], TOKEN, report, timeout=60))
        if answer.status != 201:
            with load.lock:
                load.failed_writes += 1
            number += 1
            continue
        load.add(load.writes, latency)
        status, usage = read_usage(urls[(number + 1) % len(urls)], TOKEN, record, timeout=60)
        with load.lock:
            load.read_backs += 1
            if usage != amount:
                load.violations.append((report.tag, status, usage))
        number += 1


def run_phase(urls: list[str], args, period: str, filled_period: str, with_writers: bool) -> Load:
    load, stop = Load(), threading.Event()
    threads = [threading.Thread(target=reader, args=(urls, args.resources, filled_period, load, stop, seed))
               for seed in range(args.readers)]
    if with_writers:
        threads += [threading.Thread(target=writer, args=(urls, n, period, load, stop)) for n in range(args.writers)]
    for thread in threads:
        thread.start()
    time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return load


def p50_p99(latencies: list[float]) -> tuple[float, float]:
    """Milliseconds."""
    return median(latencies) * 1000, quantiles(latencies, n=100)[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=15, help="length of each phase")
    parser.add_argument("--servers", type=int, default=1, choices=(1, 2), help="`ledger serve` processes over the database")
    parser.add_argument("--workers", type=int, help=f"workers per server  [default: {DEFAULT_WORKERS} split among the servers]")
    parser.add_argument("--readers", type=int, default=4, help="reader threads")
    parser.add_argument("--writers", type=int, default=4, help="writer threads, each with a resource of its own")
    args = parser.parse_args()
    workers = args.workers or max(1, DEFAULT_WORKERS // args.servers)

    folder = Path(tempfile.mkdtemp(prefix="bench-mixed-"))
    os.environ.pop("LEDGER_NOW", None)  # the real clock, as in production (the servers inherit it)
    db_path = str(folder / "ledger.db")
    ledger = Ledger(db_path)
    ledger.init()
    load_catalog(ledger, json.dumps(catalog(args.resources)))
    fill(ledger, args.resources, args.records)
    ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()
    os.sync()  # what was just written would otherwise be flushed during the measurement

    period = clock.billing_period(clock.now())
    filled_period = clock.previous_period(period).isoformat()  # the month the records of `fill` fill first
    servers = [LedgerServer(db_path, workers=workers) for _ in range(args.servers)]
    try:
        for server in servers:
            server.start(timeout=60)
        urls = [server.url for server in servers]
        alone = run_phase(urls, args, period.isoformat(), filled_period, with_writers=False)
        mixed = run_phase(urls, args, period.isoformat(), filled_period, with_writers=True)
    finally:
        for server in servers:
            server.stop()

    print(f"\n{args.records} usage records, {args.servers} server(s) x {workers} workers, {args.readers} readers,"
          f" {args.writers} writers, {args.seconds} s a phase; latencies in ms, of answered requests")
    print(f"{'':34} {'p50':>8} {'p99':>8} {'req/s':>8} {'failed':>7}")
    for name, latencies, failed in (("read, readers alone", alone.reads, alone.failed_reads),
                                    ("read, with writers", mixed.reads, mixed.failed_reads),
                                    ("set_usage (1 item), with readers", mixed.writes, mixed.failed_writes)):
        p50, p99 = p50_p99(latencies)
        print(f"{name:34} {p50:8.1f} {p99:8.1f} {len(latencies) / args.seconds:8.0f} {failed:7d}")
    (alone_p50, alone_p99), (mixed_p50, mixed_p99) = p50_p99(alone.reads), p50_p99(mixed.reads)
    print(f"read latency with writers / readers alone: p50 x{mixed_p50 / alone_p50:.2f}, p99 x{mixed_p99 / alone_p99:.2f}")
    print(f"acknowledged writes read back: {mixed.read_backs}; violations (not the amount just acknowledged):"
          f" {len(mixed.violations)}")
    for tag, status, usage in mixed.violations[:10]:
        print(f"  {tag}: status {status}, usage {usage}")
    shutil.rmtree(folder)
    sys.exit(1 if mixed.violations else 0)


if __name__ == "__main__":
    main()
