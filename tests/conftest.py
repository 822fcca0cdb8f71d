import copy
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import api
from api import create_app
from ledger.backends.postgres import connection as postgres_connection
from ledger.cli import load_catalog
from ledger.commands import tokens
from ledger.database import Ledger
from ledger.rules.access import Caller
from projections import catalog as catalog_view

from .serving import free_port, stop_group
from .world import catalog_document, token


@pytest.fixture
def now(monkeypatch):
    """Fixes the ledger's clock; returns a setter for moving it."""

    def set_now(moment: str):
        monkeypatch.setenv("LEDGER_NOW", moment)

    set_now("2026-03-15T12:00:00Z")
    return set_now


@pytest.fixture
def catalog():
    return copy.deepcopy(catalog_document())


def new_database(request, backend: str, folder) -> str:
    """An empty database of `backend` for a module's servers ("sqlite": a file in `folder`;
    "postgresql": a database of the session's server), named as `--db` takes it."""
    if backend == "postgresql":
        return request.getfixturevalue("postgres_server").new_database()
    return str(folder / "ledger.db")


@pytest.fixture
def db_path(request, tmp_path, catalog, now):
    """A ledger database with the test catalog loaded: a SQLite file, or (parametrized indirectly with
    "postgresql", as the official client's tests are) a fresh PostgreSQL database's URL."""
    backend = getattr(request, "param", "sqlite")
    # postgres_url closes this process's pools after the test: a test's connections do not pile up.
    path = request.getfixturevalue("postgres_url") if backend == "postgresql" else str(tmp_path / "ledger.db")
    ledger = Ledger(path)
    ledger.init()
    load_catalog(ledger, json.dumps(catalog))
    ledger.close()
    return path


@pytest.fixture
def ledger(db_path):
    opened = Ledger(db_path)
    yield opened
    opened.close()


@pytest.fixture
def app(db_path):
    app = create_app({"DATABASE": db_path, "TESTING": True, "ROLLOVER_SECONDS": 0})
    yield app
    api.close(app)


@pytest.fixture
def client(app):
    return app.test_client()


def auth(username: str) -> dict:
    return {"Authorization": f"Token {token(username)}"}


def event_count(path: str) -> int:
    """How many events the log of the database at `path` holds."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def caller_of(conn, username: str) -> Caller:
    """The caller that the test world's token of `username` authenticates as."""
    return catalog_view.token_holder(conn, tokens.digests(tokens.key(conn), token(username)))[0]


# Every test of a module marked so runs on a SQLite file and on a PostgreSQL database.
ON_BOTH_BACKENDS = pytest.mark.parametrize("db_path", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def live_server(db_path, tmp_path):
    """`ledger serve` in a subprocess on a loopback port; yields its base URL."""
    port = free_port()
    env = {**os.environ, "LEDGER_DB": db_path}
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/schema/", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"server did not start: {process.stderr.read().decode()}") from None
            time.sleep(0.1)
    yield url
    stop_group(process)


def sqlite_work(conn, action) -> int:
    """How much SQLite work `action()` takes on `conn`, in hundreds of virtual machine instructions:
    a measure that, unlike time, does not depend on the machine."""
    steps = []
    conn.set_progress_handler(lambda: steps.append(1), 100)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 0)
    return len(steps)


def assert_first_page_work_stays_flat(conn, fetch_page, add_rows) -> None:
    """A first page of 10 (`fetch_page()`) takes about as much SQLite work over 2,200 rows as over
    200, rows that `add_rows(count, start)` adds: it is read off an index, not sorted."""

    def work() -> int:
        pages = []
        steps = sqlite_work(conn, lambda: pages.append(fetch_page()))
        assert len(pages[0]) == 10
        return steps

    add_rows(200, 0)
    fewer = work()
    add_rows(2000, 200)
    assert work() < 1.5 * fewer


# The catalog rows that name a record `u`'s resource, offering, project, customer and component:
# a plain query joined to them is what a page of the views must equal (a record is listed only where
# its catalog rows are; the views read the names apart, projections/placement.py).
CATALOG_JOINS = (
    " JOIN resources r ON r.uuid = u.resource_uuid"
    " JOIN offerings o ON o.uuid = u.offering_uuid"
    " JOIN projects p ON p.uuid = u.project_uuid"
    " JOIN customers cu ON cu.uuid = u.customer_uuid"
    " LEFT JOIN components c ON c.offering_uuid = u.offering_uuid AND c.type = u.type"
)


def query_plan_of_page(conn, fetch_page) -> str:
    """SQLite's plan for finding the rows of the page that `fetch_page()` gives (its last statement
    that reads records, before their catalog names are read): of its subquery `page` when it has
    one, after which only the page's own rows are joined and sorted."""
    statements = []
    conn.set_trace_callback(statements.append)
    try:
        assert fetch_page()
    finally:
        conn.set_trace_callback(None)
    page_statement = [statement for statement in statements if "component_usages" in statement][-1]
    plan = conn.execute(f"EXPLAIN QUERY PLAN {page_statement}").fetchall()
    page = {node for node, _, _, detail in plan if detail == "CO-ROUTINE page"}
    for node, parent, _, _ in plan:  # parents come before their children
        if parent in page:
            page.add(node)
    return " / ".join(detail for node, _, _, detail in plan if not page or node in page)


def assert_ordered_pages_are_the_plain_ones(view, plain, conn, scopes, orders, filter_sets, windows) -> None:
    """Each page of `view.records` in each ordering, filter set and (limit, offset) window equals
    `plain(conn, scopes, filters, limit, offset, order)`: the page of one plain joined query."""
    for order in orders:
        for filters in filter_sets:
            for limit, offset in windows:
                page = [row["uuid"] for row in view.records(conn, scopes, filters, order, limit, offset)]
                assert page == plain(conn, scopes, filters, limit, offset, order), (order, filters, limit, offset)


def assert_page_is_found_without_the_catalog(conn, fetch_page) -> None:
    """The plan that finds the page of `fetch_page()` looks nothing up in the catalog tables (resources
    r, offerings o, projects p, customers cu, components c): only the page's own rows are joined to them."""
    assert not re.search(r"SEARCH (r|o|p|cu|c) ", query_plan_of_page(conn, fetch_page))


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole session, started on first use (tests/postgres.py)."""
    from .postgres import Server  # imported on first use: a session without PostgreSQL tests starts none

    server = Server()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a new, empty PostgreSQL database; the pools of the test's connections are closed after it."""
    yield postgres_server.new_database()
    postgres_connection.close_pools()
