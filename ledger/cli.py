"""The `ledger` command: a thin click layer over functions you can call from Python."""

import dataclasses
import datetime as dt
import functools
import json
import os
import sys
import uuid

import click

from ledger import backends, demo, history
from ledger.commands import catalog, tokens
from ledger.database import Ledger
from ledger.opening import LedgerUnusable, Mode, translated_errors, views_current
from ledger.opening import open_ledger as open_database
from ledger.output import emit, output_format
from ledger.rules import clock
from projections import catalog as catalog_view
from projections import reports, runner, usages

# Gunicorn's advice: about two worker processes per CPU. Python runs one thread of a process at a
# time, so processes, not threads, use the CPUs; a second thread lets a worker parse and decide a
# request while another waits for its commit. Measured on two CPUs: 4 x 2 served about 30% more
# set_usage and filtered-list requests a second than 2 x 4 (tests/bench/bench_http.py).
DEFAULT_WORKERS = 2 * (os.cpu_count() or 1)
DEFAULT_THREADS = 2


class Unusable(click.ClickException):
    """A database path the command cannot use: one line, and the exit status of a usage error."""

    exit_code = 2


class LedgerGroup(click.Group):
    """The command group: a database error anywhere in a command ends it with one line, not a traceback."""

    def invoke(self, ctx):
        try:
            with translated_errors(ctx.params.get("db_path", "the database")):
                return super().invoke(ctx)
        except LedgerUnusable as error:
            raise Unusable(str(error)) from None


@click.group(cls=LedgerGroup)
@click.version_option(package_name="usage-ledger", prog_name="ledger")
@click.option(
    "--db", "db_path", envvar="LEDGER_DB", default="ledger.db", show_default=True,
    help="The ledger's database: a SQLite file's path, or a postgresql:// URL (LEDGER_DB).",
)
@click.pass_context
def cli(ctx, db_path):
    """usage-ledger: an event-sourced usage-metering ledger with Waldur's usage API.

    Example: ledger --db /var/lib/ledger.db demo
    """
    ctx.obj = {"db_path": db_path}


def open_ledger(ctx, mode: Mode) -> Ledger:
    """The command's ledger, opened in `mode` (see ledger/opening.py), closed when the command ends."""
    ledger = open_database(ctx.obj["db_path"], mode)
    ctx.call_on_close(ledger.close)
    return ledger


def open_views(ctx) -> Ledger:
    """The command's ledger, opened to read its views, which must hold its whole log."""
    return views_current(open_ledger(ctx, Mode.READ), ctx.obj["db_path"])


@cli.command()
@click.pass_context
def init(ctx):
    """Create the database (log and views) if it does not exist.

    Example: ledger --db ledger.db init
    """
    open_ledger(ctx, Mode.CREATE)
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
    appended = load_catalog(open_ledger(ctx, Mode.CREATE), file.read())
    click.echo(f"catalog loaded: {appended} event(s) appended")


def load_catalog(ledger: Ledger, text: bytes | str) -> int:
    """Validates and loads a catalog file; raises ClickException listing every problem."""
    try:
        return catalog.load(ledger, text)
    except catalog.CatalogError as error:
        raise click.ClickException("catalog rejected:\n" + "\n".join(error.problems)) from None


class TokenGroup(click.Group):
    """`ledger token`: `ledger token USERNAME`, the form before issue/list/revoke, still issues a token;
    a token command that cannot be carried out (an unknown user or token) ends in one line."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            click.echo(f"note: `ledger token {args[0]}` is now `ledger token issue {args[0]}`", err=True)
            args = ["issue", *args]
        return super().resolve_command(ctx, args)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except tokens.TokenError as error:
            raise click.ClickException(str(error)) from None


@cli.group("token", cls=TokenGroup)
def token_group():
    """API tokens: issue, list and revoke them. Only a keyed digest of a token is kept, so it is shown once.

    Example: ledger --db demo.db token issue hpc-owner --expires 90d
    """


def token_expiry(ctx, param, value: str | None):
    if value is None:
        return None
    try:
        return tokens.expiry(value, clock.now())
    except ValueError:
        raise click.BadParameter("neither an ISO date or datetime nor a number of days, e.g. 2027-01-01 or 90d") from None


@token_group.command("issue")
@click.argument("username")
@click.option("--expires", callback=token_expiry, metavar="WHEN",
              help="When the token stops working: an ISO date or datetime, or days from now (90d). Default: never.")
@click.pass_context
def token_issue(ctx, username, expires):
    """Issue a new API token for a user; the token alone is printed on the last line, once.

    Example: ledger --db demo.db token issue hpc-owner --expires 2027-01-01
    """
    token_id, key = tokens.issue_token(open_ledger(ctx, Mode.WRITE), username, expires)
    click.echo(f"token {token_id} issued to {username}" + (f", expires {clock.stored(expires)}" if expires else ""))
    click.echo(key)


@token_group.command("list")
@click.argument("username", required=False)
@output_format
@click.pass_context
def token_list(ctx, username, fmt):
    """The tokens of every user, or of one: id, user, origin (catalog or issued), created, expires, revoked.

    The tokens themselves are never shown: the ledger does not have them.

    Example: ledger --db demo.db token list hpc-owner
    """
    emit(tokens.listed(open_ledger(ctx, Mode.WRITE).conn, username), fmt, TOKEN_COLUMNS, table=token_line)


TOKEN_COLUMNS = ("id", "username", "source", "created", "expires_at", "revoked_at")


def token_line(token: dict) -> dict:
    """A token as a table row for people."""
    return {"id": token["id"], "user": token["username"], "origin": token["source"], "created": token["created"],
            "expires": token["expires_at"] or "never", "revoked": token["revoked_at"] or ""}


@token_group.command("revoke")
@click.argument("username")
@click.option("--id", "token_id", type=int, help="Only this token (an id from `ledger token list`).")
@click.pass_context
def token_revoke(ctx, username, token_id):
    """Revoke every live token of a user, or one with --id; a revoked token gets 401 at once, servers included.

    Example: ledger --db demo.db token revoke hpc-owner
    """
    revoked = tokens.revoke_tokens(open_ledger(ctx, Mode.WRITE), username, token_id)
    if revoked:
        click.echo(f"revoked {len(revoked)} token(s) of {username}: {', '.join(map(str, revoked))}")
    else:
        click.echo(f"{username} holds no live token: nothing revoked")


@cli.command("roll-period")
@click.pass_context
def roll_period(ctx):
    """Start every billing month the clock has entered (idempotent; for cron).

    The server does this on its own; this command is for ledgers written without one.

    Example: ledger --db ledger.db roll-period
    """
    started = open_ledger(ctx, Mode.WRITE).roll_periods()
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
    ledger = open_ledger(ctx, Mode.WRITE)
    with click.progressbar(length=ledger.store.count(), label="replaying", file=sys.stderr) as bar:
        runner.rebuild(ledger.store, progress=bar.update)
    click.echo(f"rebuilt views from {ledger.store.count()} event(s)")


# History tools (ledger/history/): their output goes to stdout, their progress bars to stderr.
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


def kept_head(ctx, param, values: tuple[str, ...]) -> list[tuple[int, str]]:
    heads = []
    for value in values:
        seq, _, hash_ = value.partition(":")
        if not (seq.isdigit() and len(hash_) == 64 and all(c in "0123456789abcdef" for c in hash_)):
            raise click.BadParameter(f"{value!r} is not SEQ:HASH, e.g. 42:{'0' * 64}")
        heads.append((int(seq), hash_))
    return heads


@cli.command()
@click.option("--head", "heads", multiple=True, callback=kept_head, metavar="SEQ:HASH",
              help="A head printed by an earlier verify and kept elsewhere: fail unless event SEQ has HASH. Repeatable.")
@click.pass_context
def verify(ctx, heads):
    """Check the hash chain, then rebuild the views from the log aside and compare them with the live ones.

    Prints the log's head as `head: SEQ HASH`. Keep it outside the ledger (a ticket, the monthly
    close): `--head SEQ:HASH` then catches a log cut short or rewritten, which the chain alone
    cannot show. Names the first broken seq, each kept head that does not match, or each table
    that differs (how many rows, a few examples), and exits with status 1 then.

    Example: ledger --db demo.db verify
    """
    result = history.verify(open_ledger(ctx, Mode.READ), heads, progress=progress_bar)
    click.echo(f"head: {result.head[0]} {result.head[1]}")
    for line in result.unmatched_heads:
        click.echo(line)
    if result.broken:
        click.echo(f"{result.broken}; the views were not compared")
        ctx.exit(1)
    click.echo(f"hash chain intact: {result.events} event(s)")
    if heads and not result.unmatched_heads:
        click.echo(f"kept head(s) found in the log: {len(heads)}")
    if not result.differences:
        click.echo(f"views identical to a rebuild from the log at seq {result.views_position} ({result.tables} tables)")
        ctx.exit(1 if result.failed else 0)
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
    ledger = open_views(ctx)
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
    records = history.replay(open_ledger(ctx, Mode.READ), until, progress=progress_bar)
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
    rows = reports.period_totals(open_views(ctx).conn, None, month, by)
    columns = ("period", f"{by}_uuid", f"{by}_name", "type", "measured_unit", "usage", "records")
    emit(rows, fmt, columns)


@cli.command()
@click.option("--since", default=0, show_default=True, type=click.IntRange(min=0), help="Only the events after this seq.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="The file to write (made even when no event is exported); standard output by default.")
@click.pass_context
def export(ctx, since, output):
    """Write the log as JSON Lines: one event per line, every column, hashes included, and each
    event's data as a JSON object (for jq: `jq .data.amount`). A --since past the log's end
    exports nothing.

    Example: ledger --db ledger.db export --output ledger.jsonl
    """
    store = open_ledger(ctx, Mode.READ).store  # before the output is made: a mistyped --db leaves no file
    with click.open_file(output, "w", encoding="utf-8", atomic=True) as stream:
        count = history.export(store, stream, since, progress=progress_bar)
    click.echo(f"exported {count} event(s)", err=True)


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def import_command(ctx, file):
    """Add an export to this log and bring the views up to date.

    Events this log already has (same seq, same hash) are skipped and the rest appended, so an
    export that overlaps this log and continues it is accepted. The file is refused whole, and
    nothing written, if an event differs from the one already here at its seq, if it leaves a
    gap, if a line is tampered with or reordered, or if an event is not exactly what the ledger
    would have written (types, dates, ids) or cannot be folded into the views.

    Example: ledger --db copy.db import ledger.jsonl
    """
    try:
        imported = history.import_log(open_ledger(ctx, Mode.CREATE), file, progress=progress_bar)
    except history.ImportRefused as refused:
        raise click.ClickException(f"import refused, nothing written: {refused}") from None
    click.echo(f"imported {imported.appended} event(s), skipped {imported.skipped} already here")


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
    open_ledger(ctx, Mode.WRITE)
    run_server(ctx.obj["db_path"], host, port, workers, threads)


# The API is named, as gunicorn deployments name their application, not imported: the write side
# and its CLI do not depend on the HTTP layer.
APPLICATION = "api.serving:application({database!r})"


def run_server(db_path: str, host: str, port: int, workers: int, threads: int = DEFAULT_THREADS) -> None:
    from gunicorn.app.base import BaseApplication
    from gunicorn.util import import_app

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
            return import_app(APPLICATION.format(database=backends.independent_of_cwd(db_path)))

    Server().run()


@cli.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=DEFAULT_WORKERS, show_default=True, type=int)
@click.pass_context
def demo_command(ctx, host, port, workers):
    """Create the database if needed, load a demo catalog, print a staff token and serve.

    The token replaces the one of the previous run and expires after a week.

    Example: ledger --db demo.db demo --port 8000
    """
    ledger = open_ledger(ctx, Mode.CREATE)
    load_catalog(ledger, demo.catalog_text())
    demo.seed_usage(ledger)
    key = demo.staff_token(ledger)
    click.echo(f"staff token: {key}")
    click.echo(
        f"try: curl -s -H 'Authorization: Token {key}' http://{host}:{port}/api/marketplace-component-usages/"
    )
    run_server(ctx.obj["db_path"], host, port, workers)
