"""The HTTP API: Waldur's marketplace component-usage endpoints over the ledger."""

import atexit
import logging
import os
import threading
import time

from flask import Flask, g, request
from werkzeug.routing import BaseConverter

from ledger.backends import Writes, backend_for
from ledger.commands import tokens
from ledger.committer import GroupCommitter
from ledger.database import Ledger
from ledger.errors import DatabaseError
from projections import projector

from . import errors, links, requests
from .json_provider import FastJSONProvider

DEFAULT_MAX_BODY = 1024 * 1024


class UUIDConverter(BaseConverter):
    """A UUID in a path, hyphenated or as 32 hex digits; given to views as 32 lowercase hex digits.

    Matching only UUIDs keeps action paths such as `set_usage/` from being taken for a record.
    """

    regex = requests.UUID_TEXT

    def to_python(self, value: str) -> str:
        return requests.spelled_alike(value)


def start_rollover_timer(path: str, seconds: float) -> None:
    """Starts billing months on time even when nobody writes (writes also start them first)."""

    def roll_forever():
        ledger = Ledger(path)
        while True:
            time.sleep(seconds)
            try:
                ledger.roll_periods()
            except DatabaseError:
                logging.getLogger(__name__).exception("billing period rollover failed; retrying")
                projector.renew_if_lost(ledger.store)

    threading.Thread(target=roll_forever, name="rollover", daemon=True).start()


def start_process(app: Flask, process: dict) -> None:
    """This process's group committer, rollover timer and projector thread."""
    path, projector_thread = app.config["DATABASE"], None
    if app.config["PROJECTOR"]:
        # Views lost to a power cut are folded again from the log; writing the views alone, on
        # SQLite it folds while the group committers append (ledger/backends/sqlite/connection.py).
        folding = Ledger(path, sync_on_commit=False, background_checkpoints=True, writes=Writes.VIEWS)
        projector_thread = projector.Projector(folding.store, folding.lease)
        # A worker stopped cleanly (gunicorn's SIGTERM ends it with sys.exit) folds what it wrote.
        atexit.register(projector_thread.stop)
    # A server's database shares its commits' flushes itself: each write is then a transaction of its own.
    committer = None if backend_for(path).commits_share_flushes else GroupCommitter(path)
    process.update(pid=os.getpid(), committer=committer, projector=projector_thread)
    if app.config["ROLLOVER_SECONDS"]:
        start_rollover_timer(path, app.config["ROLLOVER_SECONDS"])


def create_app(config: dict | None = None) -> Flask:
    """The Flask application; `config["DATABASE"]` names the ledger's database (a SQLite file's path or a PostgreSQL URL)."""
    app = Flask(__name__, static_folder=None)
    app.config.update(
        DATABASE=os.environ.get("LEDGER_DB", "ledger.db"),
        MAX_CONTENT_LENGTH=int(os.environ.get("LEDGER_MAX_BODY", DEFAULT_MAX_BODY)),
        JSON_SORT_KEYS=False,
        PROVIDE_AUTOMATIC_OPTIONS=False,  # methods other than a route's own are 405, OPTIONS too
        ROLLOVER_SECONDS=60,
        # A thread per process that folds the log into the views (`ledger serve`); without it,
        # the requests that find the views behind fold them themselves.
        PROJECTOR=False,
    )
    app.config.update(config or {})
    links.configured_base_url()  # a malformed LEDGER_BASE_URL stops the server at start, not every request
    app.json = FastJSONProvider(app)
    app.json.sort_keys = False
    app.json.compact = True
    ledger = Ledger(app.config["DATABASE"])
    ledger.init()
    ledger.roll_periods()
    token_key = tokens.key(ledger.conn)
    ledger.close()

    # One connection per thread for reading and deciding, opened on first use; one group committer (on
    # SQLite), one rollover timer and (with PROJECTOR) one projector thread per process (a forked
    # worker makes its own).
    local = threading.local()
    process = app.extensions["ledger"] = {"pid": None, "committer": None, "projector": None, "token_key": token_key}
    process_lock = threading.Lock()

    app.before_request(requests.read_unsized_body)

    @app.before_request
    def open_ledger():
        with process_lock:
            if process["pid"] != os.getpid():
                start_process(app, process)
        if getattr(local, "pid", None) != process["pid"]:  # none yet, or inherited by a fork
            local.ledger = Ledger(app.config["DATABASE"], committer=process["committer"], projector=process["projector"])
            local.pid = process["pid"]
        g.ledger = local.ledger
        # Every request reads the views (its caller's token, at least): they must hold every write
        # acknowledged before it arrived, in this process or another (but what its view says it
        # need not wait for, see requests.unwaited). A view whose first read carries the arrival
        # (requests.arrives_with_first_read) is served on the positions the last one found, until that read.
        view = app.view_functions.get(request.endpoint)
        if view is None or getattr(view, "reads_nothing", False):  # no route (a 404 or 405), or a view
            return  # that reads nothing: nothing to wait for
        unwaited = getattr(view, "unwaited", ())
        if getattr(view, "arrives_with_first_read", False):
            g.ledger.presume_arrival(unwaited)
        else:
            # Arrives, and arrives again in a new session if its own was lost.
            requests.on_a_new_session(g.ledger, lambda: g.ledger.arrive(unwaited), unwaited=unwaited)

    app.url_map.converters["uuid"] = UUIDConverter
    app.url_map.strict_slashes = False  # a path without its trailing slash is served, not redirected as HTML
    errors.register(app)
    from . import accounts, openapi, pages, provider, reports, site_agents, usages, user_usages

    app.register_blueprint(usages.blueprint)
    app.register_blueprint(user_usages.blueprint)
    app.register_blueprint(openapi.blueprint)
    for blueprint in (accounts.blueprint, provider.blueprint, site_agents.blueprint, reports.blueprint, pages.blueprint):
        app.register_blueprint(blueprint)
    for endpoint, view in app.view_functions.items():
        app.view_functions[endpoint] = requests.served_on_a_new_session(view)
    return app


def close(app: Flask) -> None:
    """Stops this process's projector, group committer and background checkpoints (a server just exits)."""
    process = app.extensions["ledger"]
    if process["projector"]:
        process["projector"].stop()
    if process["committer"]:
        process["committer"].close()
