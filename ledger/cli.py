"""The `ledger` command: a thin click layer over functions you can call from Python."""

import dataclasses
import datetime as dt
import functools
import json
import os
import sys
import uuid

import click

from projections import catalog as catalog_view
from projections import reports, runner, usages

from . import catalog, clock, demo, history
from .database import Ledger
from .output import emit, output_format

# Gunicorn's advice: about two worker processes per CPU. Python runs one thread of a process at a
# time, so processes, not threads, use the CPUs; a second thread lets a worker parse and decide a
# request while another waits for its commit. Measured on two CPUs: 4 x 2 served about 30% more
# set_usage and filtered-list requests a second than 2 x 4 (tests/bench/bench_http.py).
DEFAULT_WORKERS = 2 * (os.cpu_count() or 1)
DEFAULT_THREADS = 2


@click.group()
@click.version_option(package_name="usage-ledger", prog_name="ledger")
@click.option(
    "--db", "db_path", envvar="LEDGER_DB", default="ledger.db", show_default=True,
    help="The ledger's SQLite database (LEDGER_DB).",
)
@click.pass_context
def cli(ctx, db_path):
    """usage-ledger: an event-sourced usage-metering ledger with Waldur's usage API.

    Example: ledger --db /var/lib/ledger.db demo
    """
    ctx.obj = {"db_path": db_path}


def open_ledger(ctx) -> Ledger:
    ledger = Ledger(ctx.obj["db_path"])
    ledger.init()
    ctx.call_on_close(ledger.close)
    return ledger


@cli.command()
@click.pass_context
def init(ctx):
    """Create the database (log and views) if it does not exist.

    Example: ledger --db ledger.db init
    """
    open_ledger(ctx)
    click.echo(f"initialised {ctx.obj['db_path']}")


@cli.group("catalog")
def catalog_group():
    """Manage the catalog (customers, projects, offerings, resources, users, roles).

    Example: ledger catalog load catalog.json
    """


@catalog_group.command("load")
@click.argument("file", type=click.File("rb"))
@click.pass_context
def catalog_load(ctx, file):
    """Load a catalog file: append events for what changed, nothing for what did not.

    A bad file is rejected whole, one line per problem, and nothing is appended.

    Example: ledger catalog load catalog.json
    """
    appended = load_catalog(open_ledger(ctx), file.read())
    click.echo(f"catalog loaded: {appended} event(s) appended")


def load_catalog(ledger: Ledger, text: bytes | str) -> int:
    """Validates and loads a catalog file; raises ClickException listing every problem."""
    try:
        return catalog.load(ledger, text)
    except catalog.CatalogError as error:
        raise click.ClickException("catalog rejected:\n" + "\n".join(error.problems)) from None


@cli.command()
@click.argument("username")
@click.pass_context
def token(ctx, username):
    """Issue a new API token for a user and print it once (only its hash is kept).

    Example: ledger --db demo.db token hpc-owner
    """
    click.echo(issue_token(open_ledger(ctx), username))


def issue_token(ledger: Ledger, username: str) -> str:
    try:
        return catalog.issue_token(ledger, username)
    except catalog.CatalogError as error:
        raise click.ClickException(str(error)) from None


@cli.command("roll-period")
@click.pass_context
def roll_period(ctx):
    """Start every billing month the clock has entered (idempotent; for cron).

    The server does this on its own; this command is for ledgers written without one.

    Example: ledger --db ledger.db roll-period
    """
    started = open_ledger(ctx).roll_periods()
    for event in started:
        click.echo(f"started billing period {event.data['billing_period']}")
    if not started:
        click.echo("no billing period to start")


@cli.command()
@click.pass_context
def rebuild(ctx):
    """Drop every view and replay the whole log into new ones.

    Example: ledger --db ledger.db rebuild
    """
    ledger = open_ledger(ctx)
    with click.progressbar(length=ledger.store.count(), label="replaying", file=sys.stderr) as bar:
        runner.rebuild(ledger.store, progress=bar.update)
    click.echo(f"rebuilt views from {ledger.store.count()} event(s)")


# History tools (ledger/history.py): their output goes to stdout, their progress bars to stderr.
progress_bar = functools.partial(click.progressbar, file=sys.stderr)


def resource_uuid(ctx, param, value: str) -> str:
    try:
        return uuid.UUID(value).hex
    except ValueError:
        raise click.BadParameter("not a UUID (32 hex digits, hyphens allowed)") from None


def billing_month(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return f"{clock.parse_month(value):%Y-%m}"
    except ValueError:
        raise click.BadParameter("not a month as YYYY-MM, e.g. 2026-03") from None


def seq_or_time(ctx, param, value: str) -> int | dt.datetime:
    if value.isdigit():
        return int(value)
    try:
        return clock.parse_datetime(value)
    except ValueError:
        raise click.BadParameter("neither a seq number nor an ISO datetime, e.g. 42 or 2026-03-01T00:00:00Z") from None


@cli.command()
@click.pass_context
def verify(ctx):
    """Check the hash chain, then rebuild the views from the log aside and compare them with the live ones.

    Names the first broken seq, or each table that differs (how many rows, a few examples),
    and exits with status 1 then.

    Example: ledger --db ledger.db verify
    """
    result = history.verify(open_ledger(ctx), progress=progress_bar)
    if result.broken:
        click.echo(f"{result.broken}; the views were not compared")
        ctx.exit(1)
    click.echo(f"hash chain intact: {result.events} event(s)")
    if not result.differences:
        click.echo(f"views identical to a rebuild from the log at seq {result.views_position} ({result.tables} tables)")
        return
    click.echo(f"views differ from a rebuild from the log at seq {result.views_position}:")
    for difference in result.differences:
        if difference.problem:
            click.echo(f"  {difference.table}: {difference.problem}")
            continue
        click.echo(
            f"  {difference.table}: {difference.live_only} row(s) only in the live view,"
            f" {difference.rebuilt_only} only in the rebuild"
        )
        for side, row in difference.examples:
            click.echo(f"    {side:<8} {json.dumps(row, ensure_ascii=False)}")
    ctx.exit(1)


@cli.command()
@click.argument("resource", callback=resource_uuid)
@click.option("--type", "component_type", help="Only this component type.")
@click.option("--period", callback=billing_month, help="Only this billing month, YYYY-MM.")
@output_format
@click.pass_context
def audit(ctx, resource, component_type, period, fmt):
    """The history of a resource's usage records: each report, who made it, when, and the value it replaced.

    Values carried into a month without a report of its own are marked `carried`; reports of one
    user's share of a record are marked `user USERNAME`.

    Example: ledger --db demo.db audit 7a8b9c0d-1e2f-4d7e-c05b-6c7d8e9f0a1b --type storage
    """
    ledger = open_ledger(ctx)
    if catalog_view.resource(ledger.conn, resource) is None:
        raise click.ClickException(f"no resource {resource} in this ledger")
    entries = history.audit(ledger, resource, component_type, period)
    emit([dataclasses.asdict(entry) for entry in entries], fmt, AUDIT_COLUMNS, table=audit_line)


AUDIT_COLUMNS = tuple(field.name for field in dataclasses.fields(history.AuditEntry))


def audit_line(entry: dict) -> dict:
    """An audit entry as a table row for people: who in one cell, old -> new in another."""
    user = entry["user"]
    return {
        "period": entry["billing_period"][:7], "type": entry["type"], "seq": entry["seq"],
        "occurred_at": entry["occurred_at"], "recorded_at": entry["recorded_at"],
        "by": "system" if entry["actor_id"] is None else f"{entry['actor_id']} {entry['username']}",
        "old -> new": f"{entry['old'] or '-'} -> {entry['new']}", "policy": entry["missing_usage_policy"],
        "note": "carried" if entry["carried"] else f"user {user}" if user else "",
    }


@cli.command()
@click.option("--until", required=True, callback=seq_or_time,
              help="A seq number, or an ISO datetime compared with the events' recorded_at.")
@output_format
@click.pass_context
def replay(ctx, until, fmt):
    """The usage records as they stood at a point of the log, rebuilt aside: the live views are untouched.

    Example: ledger --db demo.db replay --until 40
    """
    records = history.replay(open_ledger(ctx), until, progress=progress_bar)
    emit(records, fmt, (*usages.RECORD_KEYS, "carried"), table=replay_line)


def replay_line(record: dict) -> dict:
    """A replayed record as a table row for people."""
    return {
        "period": record["billing_period"][:7], "resource": record["resource_name"], "type": record["type"],
        "usage": record["usage"], "policy": record["missing_usage_policy"], "date": record["date"],
        "by": record["modified_by"] or "", "note": "carried" if record["carried"] else "",
    }


@cli.command()
@click.option("--period", callback=billing_month, help="The billing month, YYYY-MM  [default: this month]")
@click.option("--by", "by", type=click.Choice(tuple(reports.GROUPS)), default="customer", show_default=True,
              help="What each row totals.")
@output_format
@click.pass_context
def report(ctx, period, by, fmt):
    """A billing month's total usage per customer, project, offering or resource and component type.

    Values carried into the month count like reported ones; `records` is how many records each total adds up.

    Example: ledger --db demo.db report --by project --csv
    """
    month = clock.parse_month(period) if period else clock.billing_period(clock.now())
    rows = reports.period_totals(open_ledger(ctx).conn, None, month, by)
    columns = ("period", f"{by}_uuid", f"{by}_name", "type", "measured_unit", "usage", "records")
    emit(rows, fmt, columns)


@cli.command()
@click.option("--since", default=0, show_default=True, type=click.IntRange(min=0), help="Only the events after this seq.")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8", atomic=True), default="-",
              help="The file to write; standard output by default.")
@click.pass_context
def export(ctx, since, output):
    """Write the log as JSON Lines: one event per line, every column, hashes included.

    Example: ledger --db ledger.db export --output ledger.jsonl
    """
    count = history.export(open_ledger(ctx).store, output, since, progress=progress_bar)
    click.echo(f"exported {count} event(s)", err=True)


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def import_command(ctx, file):
    """Append an export to this log and bring the views up to date.

    The file must continue this log's hash chain from its last event (a new database: from
    the start); a tampered or reordered file is refused whole and nothing is written.

    Example: ledger --db copy.db import ledger.jsonl
    """
    try:
        count = history.import_log(open_ledger(ctx), file, progress=progress_bar)
    except history.ImportRefused as refused:
        raise click.ClickException(f"import refused, nothing written: {refused}") from None
    click.echo(f"imported {count} event(s)")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=int,
              help="gunicorn worker processes (default: two per CPU)")
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, type=int, help="threads per worker")
@click.pass_context
def serve(ctx, host, port, workers, threads):
    """Serve the HTTP API with gunicorn.

    Example: ledger --db ledger.db serve --host 127.0.0.1 --port 8000 --workers 4 --threads 2
    """
    open_ledger(ctx)
    run_server(ctx.obj["db_path"], host, port, workers, threads)


def run_server(db_path: str, host: str, port: int, workers: int, threads: int = DEFAULT_THREADS) -> None:
    from gunicorn.app.base import BaseApplication

    from api import create_app

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            # Threads let a worker's concurrent writes share one commit (ledger/committer.py).
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", None)
            self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_app({"DATABASE": os.path.abspath(db_path)})

    Server().run()


@cli.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=int)
@click.pass_context
def demo_command(ctx, host, port, workers):
    """Create the database if needed, load a demo catalog, print a staff token and serve.

    Example: ledger --db demo.db demo --port 8000
    """
    ledger = open_ledger(ctx)
    load_catalog(ledger, demo.catalog_text())
    demo.seed_usage(ledger)
    key = issue_token(ledger, demo.staff_username())
    click.echo(f"staff token: {key}")
    click.echo(
        f"try: curl -s -H 'Authorization: Token {key}' http://{host}:{port}/api/marketplace-component-usages/"
    )
    run_server(ctx.obj["db_path"], host, port, workers)
