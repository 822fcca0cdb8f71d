"""Runs every benchmark in turn and prints their tables (each with its baseline of the same run).

    .venv/bin/python tests/bench/run_all.py            # the full sizes: about an hour on 2 cores
    .venv/bin/python tests/bench/run_all.py --quick    # small sizes, to check that everything runs

Needs wrk (apt-get install wrk) and the bench extra (pip install -e '.[bench]': eventsourcing).
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS = {
    "HTTP: set_usage and a filtered list vs minimal Flask (targets 60% and 50%)":
        (["bench_http.py", "--records", "1000000", "--seconds", "10"],
         ["bench_http.py", "--records", "20000", "--resources", "1000", "--seconds", "3"]),
    "In-process commands vs eventsourcing's SQLite application (informational: a sequential caller pays one fsync per command)":
        (["bench_commands.py"], ["bench_commands.py", "--scale", "0.1"]),
    "Rebuild vs raw batched inserts of the same rows (target 50%, peak < 300 MB)":
        (["bench_rebuild.py", "--events", "1000000"], ["bench_rebuild.py", "--events", "20000", "--resources", "500"]),
    "Export and verify (targets 100k and 50k events/s, constant memory)":
        (["bench_history.py", "--events", "1000000"], ["bench_history.py", "--events", "20000"]),
    "Store appends vs raw sqlite3 inserts":
        (["bench_store.py"], ["bench_store.py", "--single", "200", "--batched", "5000"]),
    "List pages and counts at scale, in-process (no target: a page should not grow with the records)":
        (["bench_lists.py"], ["bench_lists.py", "--records", "20000", "--user-usages", "8000", "--resources", "1000"]),
    "The log's growth over a day of site agent cycles, before and after unchanged reports append nothing":
        (["bench_agent_cycles.py"], ["bench_agent_cycles.py", "--resources", "3", "--users", "3"]),
    "Readers and writers together: every acknowledged write read back, read p99 beside readers alone":
        (["bench_mixed.py", "--records", "1000000"], ["bench_mixed.py", "--records", "20000", "--seconds", "5"]),
    "Period totals, chart data and the overview page vs SQLite's own GROUP BY (no target)":
        (["bench_reports.py"], ["bench_reports.py", "--records", "20000", "--resources", "1000"]),
    "HTTP on PostgreSQL: set_usage and a filtered list vs minimal Flask on the same server (targets 50% and 50%)":
        (["bench_http.py", "--db", "postgresql", "--records", "1000000", "--seconds", "10"],
         ["bench_http.py", "--db", "postgresql", "--records", "20000", "--resources", "1000", "--seconds", "3"]),
    "A usage report on PostgreSQL part by part, in-process, against the bare insert (no target: where set_usage's CPU goes)":
        (["bench_report_parts.py"],
         ["bench_report_parts.py", "--records", "20000", "--resources", "1000", "--reports", "500"]),
    "Two ledger serve nodes over one PostgreSQL database vs one node, every 201 in the log (target 100%)":
        (["bench_nodes.py"], ["bench_nodes.py", "--resources", "1000", "--seconds", "3", "--rounds", "1"]),
    "Rebuild on PostgreSQL vs raw batched inserts of the same rows (target 30%)":
        (["bench_rebuild.py", "--events", "1000000", "--db", "postgresql"],
         ["bench_rebuild.py", "--events", "20000", "--resources", "500", "--db", "postgresql"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check that everything runs")
    args = parser.parse_args()
    failed = []
    for title, (full, quick) in BENCHMARKS.items():
        script, *options = quick if args.quick else full
        print(f"\n=== {title}\n$ {Path(sys.executable).name} tests/bench/{script} {' '.join(options)}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / script), *options], stderr=subprocess.DEVNULL)
        if result.returncode:
            failed.append(script)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
