"""The `ledger` command: a thin click layer over functions you can call from Python."""

import os
import secrets
import sys

import click

from projections import catalog as catalog_view
from projections import runner

from . import catalog, clock, demo, events
from .database import Ledger


@click.group()
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
        parsed = catalog.parse(text)
        with ledger.store.transaction():
            catalog.check_references(parsed, ledger.conn)
            stored = ledger.write(lambda: catalog.decide(parsed, ledger.store, clock.stored(clock.now())))
    except catalog.CatalogError as error:
        raise click.ClickException("catalog rejected:\n" + "\n".join(error.problems)) from None
    return len(stored)


@cli.command()
@click.argument("username")
@click.pass_context
def token(ctx, username):
    """Issue a new API token for a user and print it once (only its hash is kept).

    Example: ledger token provider-owner
    """
    click.echo(issue_token(open_ledger(ctx), username))


def issue_token(ledger: Ledger, username: str) -> str:
    user_id = catalog_view.user_id(ledger.conn, username)
    if user_id is None:
        raise click.ClickException(f"no user named {username!r} in the catalog")
    key = secrets.token_hex(20)
    data = {"user_id": user_id, "token_sha256": catalog.token_sha256(key)}
    stream = f"token/{user_id}"
    ledger.write(lambda: [
        events.new(stream, ledger.store.stream_version(stream) + 1, "TokenIssued", data, clock.stored(clock.now()))
    ])
    return key


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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=4, show_default=True, type=int, help="gunicorn worker processes")
@click.pass_context
def serve(ctx, host, port, workers):
    """Serve the HTTP API with gunicorn.

    Example: ledger --db ledger.db serve --host 127.0.0.1 --port 8000 --workers 4
    """
    open_ledger(ctx)
    run_server(ctx.obj["db_path"], host, port, workers)


def run_server(db_path: str, host: str, port: int, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    from api import create_app

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", None)
            self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_app({"DATABASE": os.path.abspath(db_path)})

    Server().run()


@cli.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
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
