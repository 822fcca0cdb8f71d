"""Dropping the views and replaying the log gives back exactly the views built one write at a time."""

import datetime as dt
import json
import random
import sqlite3

import pytest
from click.testing import CliRunner

from ledger.cli import cli, load_catalog
from ledger.commands import usage
from ledger.database import Ledger
from ledger.rules.access import Caller
from projections import runner, schema

from .world import OTHER_PROJECT, OTHER_RESOURCE, PROJECT, PROVIDER, RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)
PROVIDER_OWNER = Caller(id=3, username="provider-owner", customers_owned=frozenset({PROVIDER}))
REPORTABLE = {RESOURCE: ("cpu", "ram", "storage", "license"), OTHER_RESOURCE: ("cpu",)}
MONTHS = ("2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08")


def snapshot(conn: sqlite3.Connection) -> dict:
    """Every view's definition and full contents: the log itself left out, and the views' mark for
    caches of the last event that changed rows, which a rebuild moves (projections/runner.py)."""
    objects = conn.execute(  # the log's file and the views' (ledger/backends/sqlite/connection.py)
        "SELECT type, name, sql FROM main.sqlite_master WHERE tbl_name != 'events' AND name NOT LIKE 'sqlite_%'"
        " UNION ALL SELECT type, name, sql FROM views.sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    contents = {
        name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)
        for kind, name, _ in objects
        if kind == "table"
    }
    contents["projection_checkpoints"] = conn.execute("SELECT name, position FROM projection_checkpoints").fetchall()
    return {"schema": sorted(objects, key=repr), "contents": contents}


def report(ledger: Ledger, rng: random.Random, month: str) -> None:
    """One set_usage of a few components of a resource, now or (by staff) backfilled into an earlier month."""
    resource = rng.choice(list(REPORTABLE))
    kinds = rng.sample(REPORTABLE[resource], rng.randint(1, len(REPORTABLE[resource])))
    items = [
        usage.UsageItem(
            type=kind, amount=f"{rng.randint(-50, 100000) / 100:.2f}", description=rng.choice(["", "nightly", "fix"]),
            missing_usage_policy=rng.choice(["none", "reuse", "zero"]),
        )
        for kind in kinds
    ]
    backfill = rng.random() < 0.2
    date = dt.datetime.fromisoformat(f"{month}-01T00:00:00+00:00") - dt.timedelta(days=rng.randint(1, 60))
    caller = STAFF if backfill or rng.random() < 0.5 else PROVIDER_OWNER
    command = usage.SetUsage(items=items, resource_uuid=resource, date=date if backfill else None)
    usage.set_usage(ledger, caller, command)


@pytest.fixture
def generated_log(ledger, catalog, now):
    """Six months of reports from two writers, with backfills, policies and catalog changes between them."""
    rng = random.Random(20260315)
    for index, month in enumerate(MONTHS):
        day = f"{month}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}"
        for second in range(25):  # each report at a time of its own: a record keeps its first report's as `created`
            now(f"{day}:30:{second:02d}Z")
            report(ledger, rng, month)
        if index == 1:
            catalog["resources"][0]["project_uuid"] = OTHER_PROJECT  # the resource moves to another project
        if index == 3:
            catalog["resources"][0]["project_uuid"] = PROJECT
            catalog["resources"][0]["state"] = "Terminating"
        load_catalog(ledger, json.dumps(catalog))
    return ledger


def test_rebuild_gives_the_views_built_incrementally(generated_log):
    before = snapshot(generated_log.conn)
    runner.rebuild(generated_log.store)
    assert snapshot(generated_log.conn) == before
    assert len(before["contents"]["component_usages"]) >= 30  # the log really made records


def test_rebuild_up_to_the_head_equals_a_full_rebuild(generated_log):
    before = snapshot(generated_log.conn)
    runner.rebuild(generated_log.store, until=generated_log.store.count())
    assert snapshot(generated_log.conn) == before


def test_dropped_views_are_rebuilt_when_the_ledger_opens(generated_log, db_path):
    before = snapshot(generated_log.conn)
    with generated_log.store.transaction():
        runner.drop(generated_log.conn)
    reopened = Ledger(db_path)
    reopened.init()
    after = snapshot(reopened.conn)
    reopened.close()
    assert after == before


def reopened_snapshot(db_path: str) -> dict:
    reopened = Ledger(db_path)
    reopened.init()
    after = snapshot(reopened.conn)
    reopened.close()
    return after


@pytest.mark.parametrize("table", ["component_usages", "projection_checkpoints"])
def test_a_view_of_an_older_shape_is_rebuilt_when_the_ledger_opens(generated_log, db_path, table):
    before = snapshot(generated_log.conn)
    # As an older release made it: usage records without their row id, checkpoints without rows_changed_at.
    declared = schema.TABLES.get(table, schema.CHECKPOINTS).columns
    columns = [name for name in declared if name not in ("id", "rows_changed_at")]
    with generated_log.store.transaction():
        generated_log.conn.execute(f"CREATE TABLE older AS SELECT {', '.join(columns)} FROM {table}")
        generated_log.conn.execute(f"DROP TABLE {table}")
        generated_log.conn.execute(f"ALTER TABLE older RENAME TO {table}")
    assert reopened_snapshot(db_path) == before


def test_rebuild_replays_in_batches_and_reports_progress(generated_log, monkeypatch):
    monkeypatch.setattr(runner, "REBUILD_BATCH", 40)
    steps = []
    runner.rebuild(generated_log.store, progress=steps.append)
    assert sum(steps) == generated_log.store.count()
    assert max(steps) == 40


def test_ledger_rebuild_command_gives_the_same_views(generated_log, db_path):
    before = snapshot(generated_log.conn)
    result = CliRunner().invoke(cli, ["--db", db_path, "rebuild"])
    assert result.exit_code == 0, result.output
    assert f"rebuilt views from {generated_log.store.count()} event(s)" in result.stdout
    assert snapshot(generated_log.conn) == before


def test_opening_a_database_drops_indexes_the_views_no_longer_have(db_path, ledger):
    retired = {
        "idx_component_usages_resource_uuid_date_type_uuid": "resource_uuid, date DESC, type, uuid",
        "idx_component_usages_offering_uuid_date_type_uuid": "offering_uuid, date DESC, type, uuid",
    }
    for name, columns in retired.items():
        ledger.conn.execute(f"CREATE INDEX views.{name} ON component_usages ({columns})")
    reopened = Ledger(db_path)
    reopened.init()
    reopened.close()
    names = {row[0] for row in ledger.conn.execute("SELECT name FROM views.sqlite_master WHERE type = 'index'")}
    assert not names & set(retired)
    assert {"idx_component_usages_resource_uuid_type_billing_period",
            "idx_component_usages_offering_uuid_date_type_desc_uuid_desc"} <= names
