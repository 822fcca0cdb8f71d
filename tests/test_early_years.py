"""Years before 1000: stored, compared and shown with four digits, so that the plan check and the
date filters hold for them; logs written with such years unpadded are read as padded, not rewritten."""

import json

import pytest
from click.testing import CliRunner
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_usages import marketplace_component_usages_list

from ledger.cli import cli
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import NewEvent
from ledger.rules import clock

from .conftest import auth
from .world import OTHER_RESOURCE, RESOURCE, token

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
LIST = "/api/marketplace-component-usages/"
ANCIENT_PLAN = "0e0000000000000000000000000000a1"


@pytest.fixture
def catalog(catalog):
    """The test catalog with the other resource's plan starting in year 1."""
    catalog["resources"][1]["plan_periods"][0]["start"] = "0001-01-01T00:00:00Z"
    return catalog


def post(client, body: dict, user: str = "staff"):
    response = client.post(SET_USAGE, json=body, headers=auth(user))
    return response.status_code, response.get_json()


def listed(client, query: str = "") -> list[dict]:
    return client.get(f"{LIST}?page_size=300&{query}", headers=auth("staff")).get_json()


@pytest.mark.parametrize("user", ["provider-owner", "staff"])
def test_a_year_before_the_plan_starts_is_refused_however_few_its_digits(client, ledger, user):
    before = ledger.store.count()
    body = {"resource": RESOURCE, "date": "0500-03-01T00:00:00Z",
            "usages": [{"type": "storage", "amount": "1", "missing_usage_policy": "reuse"}]}
    assert post(client, body, user) == (400, {"non_field_errors": ["Resource must have a plan to report usage"]})
    assert ledger.store.count() == before
    assert listed(client) == []


def test_the_plan_period_in_force_is_found_in_early_years(client):
    body = {"resource": OTHER_RESOURCE, "date": "0999-12-15T08:00:00Z", "usages": [{"type": "cpu", "amount": "3"}]}
    assert post(client, body) == (201, None)
    (record,) = listed(client)
    assert (record["date"], record["created"][:4], record["billing_period"]) == (
        "0999-12-15T08:00:00Z", "2026", "0999-12-01")


def test_early_dates_sort_and_filter_as_dates(client):
    for date in ("0999-12-15T08:00:00Z", "0099-01-02T00:00:00Z", "2026-01-05T00:00:00Z"):
        body = {"resource": OTHER_RESOURCE, "date": date, "usages": [{"type": "cpu", "amount": "3"}]}
        assert post(client, body)[0] == 201
    assert [r["date"] for r in listed(client)] == ["2026-01-05T00:00:00Z", "0999-12-15T08:00:00Z", "0099-01-02T00:00:00Z"]
    assert [r["date"] for r in listed(client, "date_before=0999-12-31")] == ["0999-12-15T08:00:00Z", "0099-01-02T00:00:00Z"]
    assert [r["date"] for r in listed(client, "date_after=0100-01-01")] == ["2026-01-05T00:00:00Z", "0999-12-15T08:00:00Z"]
    assert [r["date"] for r in listed(client, "o=billing_period")] == [
        "0099-01-02T00:00:00Z", "0999-12-15T08:00:00Z", "2026-01-05T00:00:00Z"]


def test_waldur_api_client_reads_a_page_holding_an_early_date(client, live_server):
    body = {"resource": OTHER_RESOURCE, "date": "0999-12-15T08:00:00Z", "usages": [{"type": "cpu", "amount": "3"}]}
    assert post(client, body)[0] == 201
    with AuthenticatedClient(base_url=live_server, token=token("staff")) as staff:
        (record,) = marketplace_component_usages_list.sync(client=staff)
    assert record.date.year == 999 and record.billing_period.year == 999


def test_a_user_usage_dated_in_an_early_year_lands_in_that_month(client):
    body = {"resource": OTHER_RESOURCE, "usages": [{"type": "cpu", "amount": "3"}]}
    assert post(client, body)[0] == 201
    (march,) = listed(client)
    share = {"username": "alice", "date": "0999-12-15T08:00:00Z"}
    response = client.post(f"{LIST}{march['uuid']}/set_user_usage/", json=share, headers=auth("staff"))
    assert response.status_code == 201
    early = [r for r in listed(client) if r["billing_period"] == "0999-12-01"]
    assert [r["date"] for r in early] == ["0999-12-15T08:00:00Z"]


def test_stored_text_has_four_digit_years_and_unpadded_text_is_read_padded():
    for year in (1, 99, 999, 1000, 9999):
        moment = clock.parse_datetime(f"{year:04d}-06-01T00:00:00Z")
        assert clock.stored(moment) == f"{year:04d}-06-01T00:00:00.000000Z"
        assert clock.padded(f"{year}-06-01T00:00:00.000000Z") == clock.stored(moment)


def test_a_log_holding_unpadded_years_is_read_padded_and_never_rewritten(db_path, client):
    """Earlier versions stored years before 1000 unpadded, in events' times and in plan periods."""
    ledger = Ledger(db_path)
    try:
        stream = f"resource/{OTHER_RESOURCE}"
        resource = dict(ledger.store.last_event(stream).data)
        resource["plan_periods"] = [{**resource["plan_periods"][0], "start": "1-01-01T00:00:00.000000Z"}]
        data = {"resource_uuid": OTHER_RESOURCE, "type": "cpu", "billing_period": "0999-12-01",
                "plan_period_uuid": resource["plan_periods"][0]["uuid"], "amount": "3.00", "description": "",
                "missing_usage_policy": "none"}
        with ledger.store.transaction():
            ledger.store.append([
                NewEvent(stream, ledger.store.stream_version(stream) + 1, "ResourceDefined", resource,
                         "2026-03-01T00:00:00.000000Z", schema_version=events.CURRENT_VERSION["ResourceDefined"]),
                NewEvent(events.usage_stream(OTHER_RESOURCE, "cpu", "0999-12-01"), 1, "UsageReported", data,
                         "999-12-15T08:00:00.000000Z", 1),
            ])
        logged = [(e.occurred_at, e.data) for e in ledger.store.read()]
    finally:
        ledger.close()
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db_path, "rebuild"]).exit_code == 0
    assert runner.invoke(cli, ["--db", db_path, "verify"]).exit_code == 0
    assert [r["date"] for r in listed(client, "date_before=1000-01-01")] == ["0999-12-15T08:00:00Z"]
    assert post(client, {"resource": OTHER_RESOURCE, "date": "0500-01-01T00:00:00Z",
                         "usages": [{"type": "cpu", "amount": "1"}]}) == (201, None)
    ledger = Ledger(db_path)
    try:
        assert [(e.occurred_at, e.data) for e in ledger.store.read()][:len(logged)] == logged
        assert ledger.conn.execute("SELECT start FROM plan_periods WHERE resource_uuid = ?", (OTHER_RESOURCE,)).fetchone() == (
            "0001-01-01T00:00:00.000000Z",)
    finally:
        ledger.close()
    assert json.dumps(logged).count('"1-01-01T00:00:00.000000Z"') == 1
