"""The views on PostgreSQL: made from the schema, folded from the demo's log, they hold the rows that
the same fold holds on SQLite, and the reads over them answer alike.

The views are folded through a connection of the PostgreSQL backend, to a database of the session's
server (tests/postgres.py). The tests are marked `postgresql` (`pytest -m postgresql` runs them alone).
"""

import datetime as dt
import json

import pytest

from ledger import demo
from ledger.backends.postgres import PostgresBackend
from ledger.commands import idempotency, site_agents, tokens
from ledger.commands.catalog import load
from ledger.database import Ledger
from ledger.rules.access import Caller
from projections import catalog, provider_catalog, reports, runner, schema, sql, usages, user_usages
from projections import site_agents as site_agent_view


pytestmark = pytest.mark.postgresql


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory):
    """The demo's catalog and history, then a new month, tokens, a site agent, a terminated resource
    and a project moved to another customer: every kind of event the views fold."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEDGER_NOW", "2026-03-15T12:00:00Z")
        ledger = Ledger(str(tmp_path_factory.mktemp("sqlite") / "demo.db"))
        ledger.init()
        load(ledger, demo.catalog_text())
        demo.seed_usage(ledger)
        patch.setenv("LEDGER_NOW", "2026-04-02T08:00:00Z")
        demo.staff_token(ledger)
        demo.staff_token(ledger)
        register_site_agent(ledger)
        changed = json.loads(demo.catalog_text())
        changed["resources"][0]["state"] = "Terminated"
        changed["projects"][1]["customer_uuid"] = changed["projects"][0]["customer_uuid"]
        load(ledger, json.dumps(changed))
        ledger.reach_views()
        yield ledger
        ledger.close()


def register_site_agent(ledger: Ledger) -> None:
    staff = Caller(id=1, username=demo.staff_username(), is_staff=True)
    offering = json.loads(demo.catalog_text())["offerings"][0]["uuid"]
    fields = {"offering_uuid": offering, "name": "agent-1", "version": "1.0.7",
              "dependencies": [{"package": "waldur-api-client", "version": "8.1.2"}],
              "config_file_path": "/etc/agent.yaml", "config_file_content": "", "last_restarted": None}
    identity = site_agents.register_identity(ledger, staff, fields)
    site_agents.register_identity(ledger, staff, {**fields, "version": "1.0.8"}, identity)
    service = site_agents.register_service(ledger, staff, identity, "report", "report")
    site_agents.register_processor(ledger, staff, service, "slurm", "SLURM", "23.02")


@pytest.fixture(scope="module")
def postgresql_connection(postgres_server):
    """A connection of the PostgreSQL backend to an empty database of the session's server."""
    conn = PostgresBackend(postgres_server.new_database()).connect()
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def postgresql_views(postgresql_connection, demo_ledger):
    """The PostgreSQL connection, its views made from the schema and folded from the demo ledger's log."""
    runner.create(postgresql_connection)
    runner.apply(postgresql_connection, demo_ledger.store.read(after=0))
    return postgresql_connection


def rows(conn, table: schema.Table) -> list[tuple]:
    """Every row of a table but its row id (each backend counts its own), in an order of their own."""
    columns = [name for name, kind in table.columns.items() if kind != "row_id"]
    quoted = ", ".join(f'"{name}"' for name in columns)
    return sorted((tuple(row) for row in conn.execute(f'SELECT {quoted} FROM "{table.name}"')), key=repr)


def test_postgresql_takes_the_schema_and_a_second_creation_changes_nothing(postgresql_views):
    assert runner.create(postgresql_views) is False
    for table in runner.tables():
        assert schema.columns(postgresql_views, table.name) == list(table.columns)


def test_every_view_folded_on_postgresql_holds_the_rows_it_holds_on_sqlite(demo_ledger, postgresql_views):
    for table in [*runner.tables(), schema.CHECKPOINTS]:
        assert rows(postgresql_views, table) == rows(demo_ledger.conn, table), table.name
    held = {table.name: len(rows(postgresql_views, table)) for table in runner.tables()}
    assert held["component_usages"] > 31 and held["component_user_usages"] > 0  # carried into April too
    assert held["tokens"] > 1 and held["agent_processors"] == 1


def test_the_rows_that_postgresql_numbers_are_counted_past_a_mark_as_on_sqlite(demo_ledger, postgresql_views):
    for view, table in ((usages, "component_usages"), (user_usages, "component_user_usages")):
        for conn in (demo_ledger.conn, postgresql_views):
            ids = [row[0] for row in conn.execute(f"SELECT id FROM {table} ORDER BY id")]
            assert view.count_since(conn, None, {}) == (len(ids), ids[-1])
            half = len(ids) // 2
            assert view.count_since(conn, None, {}, ids[half - 1]) == (len(ids) - half, ids[-1])


def reads(conn) -> dict:
    """What the API and the CLI read from the views, for staff and for a customer's owner."""
    first = json.loads(demo.catalog_text())["customers"][1]["uuid"]
    owner = Caller(id=0, username="owner", customers_owned=frozenset({first})).visible_scopes()
    filters = {"billing_period_year": 2026, "missing_usage_policy": ["reuse", "zero"]}
    return {
        "records": usages.records(conn, None, {}, [], 1000),
        "by usage": usages.records(conn, None, {}, ["-usage"], 10),
        "owner's records": usages.records(conn, owner, {}, [], 10),
        "filtered": usages.records(conn, None, filters, ["billing_period"], 100),
        "owner's count": usages.count(conn, owner, filters),
        "carried from": [usages.carried_from(conn, r["resource_uuid"], r["type"], r["billing_period"])
                         for r in usages.records(conn, None, {}, [], 1000)],
        "user usages": user_usages.records(conn, None, {}, [], 100),
        "owner's user usages": user_usages.records(conn, owner, {}, [], 10),
        "named": user_usages.records(conn, None, {"username": "A"}, ["-usage"], 100),
        "period totals": reports.period_totals(conn, owner, dt.date(2026, 3, 1), "project"),
        "monthly totals": reports.monthly_totals(conn, None, {}, dt.date(2025, 10, 1), dt.date(2026, 4, 1)),
        "tokens": catalog.tokens(conn),
        "staff tokens": catalog.tokens(conn, catalog.user_id(conn, demo.staff_username())),
        "resources": provider_catalog.resources(conn, None, {}),
        "offering users": provider_catalog.offering_users(conn, None, {}),
        "providers": provider_catalog.service_providers(conn, owner, {}),
        "identities": site_agent_view.identities(conn, None, {}),
    }


def test_the_reads_over_postgresql_answer_as_over_sqlite(demo_ledger, postgresql_views):
    on_sqlite = reads(demo_ledger.conn)
    assert reads(postgresql_views) == on_sqlite
    assert on_sqlite["owner's records"] and on_sqlite["named"] and on_sqlite["period totals"]


def test_the_ledgers_side_tables_are_made_and_used_on_postgresql(postgresql_views):
    tokens.create(postgresql_views)
    kept = tokens.key(postgresql_views)
    tokens.create(postgresql_views)
    assert tokens.key(postgresql_views) == kept and len(kept) == 32
    idempotency.create(postgresql_views)
    key = idempotency.Key.of(1, "retry-1", "POST", "/api/x/", b"{}", 201)
    idempotency.remember(postgresql_views, key)
    with pytest.raises(idempotency.Replayed):
        idempotency.check(postgresql_views, key)


def test_a_list_of_values_is_looked_up_in_an_index_not_joined(postgresql_views):
    """A filter on several values (a caller's scopes, the fold's records) takes them as an array that
    the planner looks up in the column's index; joined as a set of JSON values, it scanned the table
    or walked a whole date index (82 ms at 100,000 records for three resources, against 0.25 ms)."""
    matched = sql.dialect(postgresql_views).json_in.format("resource_uuid")
    postgresql_views.execute("SET enable_seqscan = off")  # the demo's few rows would be scanned whatever the plan
    try:
        plan = "\n".join(row[0] for row in postgresql_views.execute(
            f"EXPLAIN SELECT uuid FROM component_usages WHERE {matched} ORDER BY date DESC LIMIT 10",
            (json.dumps(["a", "b", "c"]),)))
    finally:
        postgresql_views.execute("RESET enable_seqscan")
    assert "Index Cond: (resource_uuid = ANY" in plan, plan


def test_a_filter_on_carried_policies_reads_their_own_index(postgresql_views):
    """The records carried forward have an index of their own (projections/schema.py), which a
    filter on their policies names the condition of: through the date index, finding none of them
    read every record (1.2 s at a million)."""
    clause, params = usages.where(postgresql_views, None, {"missing_usage_policy": ["reuse", "zero"]})
    postgresql_views.execute("SET enable_seqscan = off")  # the demo's few rows would be scanned whatever the plan
    try:
        plan = "\n".join(row[0] for row in postgresql_views.execute(
            f"EXPLAIN SELECT u.uuid FROM component_usages u WHERE {clause} ORDER BY {usages.DEFAULT_ORDER} LIMIT 10",
            params))
    finally:
        postgresql_views.execute("RESET enable_seqscan")
    assert "on idx_component_usages_carried_policies" in plan, plan


def test_a_first_page_in_the_default_order_is_read_whole_and_a_sorted_page_by_its_uuids(postgresql_views):
    """On PostgreSQL a first page off an index in the default order is one scan of whole rows (46
    buffers against 88 by way of their uuids); a page sorted by `o`, or past an offset, finds its
    uuids first, then reads only its own rows: sorting whole rows took 35 ms where uuids took 13."""
    statements = []
    execute = postgresql_views.execute

    def traced(statement, parameters=()):
        statements.append(statement)
        return execute(statement, parameters)

    postgresql_views.execute = traced
    try:
        pages = [usages.records(postgresql_views, None, {"type": "cpu_hours"}, order, 2, offset)
                 for order, offset in (([], 0), (["-usage"], 0), ([], 2))]
    finally:
        postgresql_views.execute = execute
    first, by_usage, second = [statement for statement in statements if "component_usages" in statement]
    assert "page.uuid" not in first and "page.uuid" in by_usage and "page.uuid" in second
    assert [record["type"] for page in pages for record in page] == ["cpu_hours"] * 6
