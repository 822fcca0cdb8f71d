"""The long reliability run: concurrent set_usage load on `ledger serve`, killed with SIGKILL and restarted.

Threads write reports to a server on 127.0.0.1 for `--minutes`; every `--kill-every` seconds
(give or take a third, so kills land at every phase of a write) something is killed with SIGKILL,
in turn: the whole server process group, then only the projector's holder (the worker whose pid
the lease file names; gunicorn starts a new worker, another takes the lease). While the server is
down the log is checked as the dead server left it (the hash chain, and the views against a
rebuild from the log), then the server is started again on the same port; after a holder's
death the same check runs against the live database. At the end every answer is held against the log: an acknowledged (201) report must
be there whole and once; an unanswered one may be there (committed, answer lost), but whole.

    .venv/bin/python tests/bench/bench_reliability.py --minutes 10
    .venv/bin/python tests/bench/bench_reliability.py --minutes 2 --kill-every 15 --threads 8 --workers 4

Exits 1 if anything acknowledged is missing, anything is half-written or doubled, an answer was
a 5xx or mentions a locked database, the chain breaks or a view differs from its rebuild.
"""

import argparse
import collections
import os
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ledger import history  # noqa: E402
from ledger.database import Ledger  # noqa: E402
from tests.serving import (  # noqa: E402
    Answer, LedgerServer, Report, Tally, lease_holder, logged_tags, new_ledger, send,
)
from tests.world import OTHER_RESOURCE, RESOURCE, catalog_document, token  # noqa: E402

TARGETS = [(RESOURCE, ("cpu", "ram", "storage", "license")), (OTHER_RESOURCE, ("cpu",))]


def writer(url: str, thread: int, deadline: float, answers: list[Answer]) -> None:
    """Sends reports of 1 to 3 items, each once, until the deadline; pauses briefly while the server is down."""
    rng, number = random.Random(thread), 0
    while time.monotonic() < deadline:
        resource, kinds = rng.choice(TARGETS)
        items = tuple((rng.choice(kinds), f"{thread}{number:07d}.{item}5") for item in range(rng.randint(1, 3)))
        answer = send(url, token("staff"), Report(f"bench-{thread}-{number}", resource, items), timeout=30)
        answers.append(answer)
        number += 1
        if answer.status is None:
            time.sleep(0.05)


def check(db_path: str) -> tuple[int, str]:
    """(events, verdict) for the database as it stands: the chain, then the views against a rebuild."""
    ledger = Ledger(db_path)
    try:
        verification = history.verify(ledger)
    finally:
        ledger.close()
    if verification.broken:
        return verification.events, f"CHAIN BROKEN: {verification.broken}"
    if verification.differences:
        tables = ", ".join(difference.table for difference in verification.differences)
        return verification.events, f"chain ok, VIEWS DIFFER from a rebuild: {tables}"
    return verification.events, "chain ok, views = rebuild"


def run(args) -> bool:
    directory = tempfile.mkdtemp(prefix="bench-reliability-")
    db_path = str(Path(directory) / "ledger.db")
    new_ledger(db_path, catalog_document())
    server = LedgerServer(db_path, workers=args.workers)
    server.start()
    print(f"database {db_path}; server {server.url}, {args.workers} workers; {args.threads} writer threads; "
          f"{args.minutes} min, SIGKILL about every {args.kill_every} s", flush=True)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    per_thread = [[] for _ in range(args.threads)]
    threads = [threading.Thread(target=writer, args=(server.url, n, deadline, per_thread[n]))
               for n in range(args.threads)]
    for thread in threads:
        thread.start()
    rng, verdicts, restarts = random.Random(0), [], 0
    try:
        while True:
            pause = args.kill_every * rng.uniform(2 / 3, 4 / 3)
            if time.monotonic() + pause >= deadline:
                break
            time.sleep(pause)
            restarts += 1
            down = time.monotonic()
            if restarts % 2 == 0 and (holder := lease_holder(db_path)):
                os.kill(holder, signal.SIGKILL)
                killed = f"projector holder {holder}"
                events, verdict = check(db_path)
            else:
                server.kill()
                killed = "server"
                events, verdict = check(db_path)
                server.start()
            verdicts.append(verdict)
            acknowledged = sum(a.status == 201 for answers in per_thread for a in list(answers))
            print(f"{time.monotonic() - started:7.1f}s  kill {restarts} ({killed}): {acknowledged} acknowledged so far, "
                  f"log {events} events, {verdict}; {time.monotonic() - down:.1f}s", flush=True)
        for thread in threads:
            thread.join()
    finally:
        server.stop()
    events, verdict = check(db_path)
    verdicts.append(verdict)
    answers = [answer for answers in per_thread for answer in answers]
    ledger = Ledger(db_path)
    try:
        tally = Tally.of(answers, logged_tags(ledger.store))
    finally:
        ledger.close()
    return report(answers, tally, events, verdicts, time.monotonic() - started, restarts)


def report(answers: list[Answer], tally: Tally, events: int, verdicts: list[str], seconds: float,
           restarts: int) -> bool:
    statuses = collections.Counter("no answer" if a.status is None else a.status for a in answers)
    server_errors = [a for a in answers if a.status and a.status >= 500]
    locked = [a for a in answers if b"locked" in a.body.lower()]
    items_sent = sum(len(a.report.items) for a in answers)
    items_acknowledged = sum(len(a.report.items) for a in answers if a.status == 201)
    bad_verdicts = [v for v in verdicts if v != "chain ok, views = rebuild"]
    print(f"""
ran {seconds:.0f} s with {restarts} SIGKILLs (the server, and the projector holder, in turn)
sent            {tally.sent} reports ({items_sent} items)
answered        {dict(sorted(statuses.items(), key=str))}
acknowledged    {tally.acknowledged} reports ({items_acknowledged} items), {tally.acknowledged / seconds:.1f}/s
log holds       {events} events in all; of the acknowledged reports: {tally.acknowledged - len(tally.missing)} whole
unacknowledged  {tally.unanswered} unanswered, of which {tally.unanswered_but_logged} committed (whole) before the kill
missing         {len(tally.missing)} acknowledged reports not in the log (must be 0)
half-written    {len(tally.partial)}   doubled {len(tally.duplicated)}   \
refused but logged {len(tally.refused_but_logged)}
5xx answers     {len(server_errors)}   "locked" in a body {len(locked)}
checks          {len(verdicts) - len(bad_verdicts)}/{len(verdicts)} times chain ok and views = rebuild"""
          + "".join(f"\n  {verdict}" for verdict in bad_verdicts), flush=True)
    return tally.sound and not server_errors and not locked and not bad_verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--kill-every", type=float, default=20, help="seconds between kills, on average")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    sys.exit(0 if run(parser.parse_args()) else 1)


if __name__ == "__main__":
    main()
