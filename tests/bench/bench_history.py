"""Export and verify (hash chain) rates over a log of a million events, with each run's peak memory.

Builds the log once with EventStore.append in big batches (usage reports over many streams;
no catalog: both operations work on the raw log), then runs each operation in a fresh
subprocess, so that its peak resident memory (VmHWM, Linux) is its own. The peak is taken when
a tenth of the events are done and again at the end: constant memory means they are about equal.
Targets: export >= 100k events/s, verify >= 50k events/s.

    .venv/bin/python tests/bench/bench_history.py
    .venv/bin/python tests/bench/bench_history.py --events 200000 --db /tmp/bench.db
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger import history  # noqa: E402
from ledger.backends.sqlite.connection import connect  # noqa: E402
from ledger.backends.sqlite.store import SQLiteEventStore  # noqa: E402
from tests.bench.bench_store import new_events  # noqa: E402

STREAMS = 5000
BATCH = 50_000


def build(path: str, events: int) -> float:
    """Appends `events` usage reports to a new log; returns the seconds it took."""
    store = SQLiteEventStore(connect(path))
    store.create_schema()
    start = time.perf_counter()
    for first in range(0, events, BATCH):
        store.append(new_events(min(BATCH, events - first), first, STREAMS))
        print(f"\rbuilding the log: {first + BATCH:>9,} / {events:,}", end="", file=sys.stderr)
    print(file=sys.stderr)
    store.conn.close()
    return time.perf_counter() - start


def peak_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries that across execve, so a
    subprocess would report the peak of the parent that forked it (which built the log)."""
    with open("/proc/self/status", encoding="ascii") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    return int(kib) / 1024


class MemoryProbe:
    """A progress bar that draws nothing but notes the peak RSS once a tenth of the work is done."""

    def __init__(self, length: int = 0, label: str = ""):
        self.length, self.done, self.peak_at_tenth = length, 0, None

    def __enter__(self) -> "MemoryProbe":
        return self

    def __exit__(self, *exc_info) -> None:
        """Nothing to close."""

    def update(self, steps: int) -> None:
        self.done += steps
        if self.peak_at_tenth is None and self.done >= self.length / 10:
            self.peak_at_tenth = peak_mb()


def run_operation(operation: str, path: str) -> dict:
    """One operation in this process: its event count, seconds and peak RSS, as JSON on stdout."""
    store = SQLiteEventStore(connect(path))
    probe = MemoryProbe(store.count())
    start = time.perf_counter()
    if operation == "export":
        with open(os.devnull, "w", encoding="utf-8") as output:
            count = history.export(store, output, progress=lambda **_: probe)
    else:
        count = store.verify_chain(progress=probe.update)
    seconds = time.perf_counter() - start
    return {"events": count, "seconds": seconds, "peak_at_tenth_mb": probe.peak_at_tenth, "peak_mb": peak_mb()}


def measure(operation: str, path: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--run", operation, "--db", path], check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="size of the log to build")
    parser.add_argument("--db", help="reuse (or build) the log in this file instead of a temporary one")
    parser.add_argument("--run", choices=("export", "verify"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_operation(args.run, args.db)))
        return

    os.environ.setdefault("LEDGER_SYNC", "normal")  # building the log is set-up, not what is measured
    with tempfile.TemporaryDirectory() as workdir:
        path = args.db or f"{workdir}/bench.db"
        if not os.path.exists(path):
            seconds = build(path, args.events)
            print(f"built {args.events:,} events in {seconds:.1f}s ({args.events / seconds:,.0f} events/s appended)")
        rows = [(operation, measure(operation, path)) for operation in ("export", "verify")]
    print(f"{'operation':<10} {'events':>10} {'seconds':>8} {'events/s':>10} {'RSS MB at 1/10':>15} {'RSS MB at end':>14}")
    for name, r in rows:
        rate = r["events"] / r["seconds"]
        print(f"{name:<10} {r['events']:>10,} {r['seconds']:>8.2f} {rate:>10,.0f}"
              f" {r['peak_at_tenth_mb']:>15.1f} {r['peak_mb']:>14.1f}")


if __name__ == "__main__":
    main()
