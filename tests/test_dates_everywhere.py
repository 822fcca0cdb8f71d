"""Any date from year 1 to 9999, in any time zone: never a 500, never an unpadded date, never a
record outside the resource's plan periods."""

import datetime as dt
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.log import events
from ledger.rules import clock

from .conftest import auth
from .world import RESOURCE

ZONES = ["UTC", "Pacific/Kiritimati", "America/New_York", "Europe/Berlin", "Asia/Kolkata"]
USAGES = "/api/marketplace-component-usages/"
USER_USAGES = "/api/marketplace-component-user-usages/"
# The resource's plans: from year 1 to 500, and from 1500 on.
PLANS = [("0e0000000000000000000000000000a1", "0001-01-01T00:00:00Z", "0500-01-01T00:00:00Z"),
         ("0e0000000000000000000000000000a2", "1500-01-01T00:00:00Z", None)]
STORED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$")
CI = bool(os.environ.get("CI"))


@pytest.fixture(params=ZONES)
def zone(request, monkeypatch):
    monkeypatch.setenv("LEDGER_TIMEZONE", request.param)
    return request.param


@pytest.fixture
def catalog(catalog, zone):
    """The test catalog, in `zone`, with the resource's plans at both ends of the calendar."""
    catalog["resources"][0]["plan_periods"] = [{"uuid": u, "start": s, "end": e} for u, s, e in PLANS]
    return catalog


@pytest.fixture
def record(client) -> str:
    assert client.post(f"{USAGES}set_usage/", json={"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1"}]},
                       headers=auth("staff")).status_code == 201
    return events.usage_record_uuid(RESOURCE, "cpu", "2026-03-01")


def wire_date(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S").zfill(19) + "Z"


moments = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59))
EDGES = st.sampled_from([dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59), dt.datetime(1, 1, 31, 23),
                         dt.datetime(499, 12, 31, 23), dt.datetime(1500, 1, 1), dt.datetime(2026, 3, 15, 11)])


def assert_no_fault(response):
    assert response.status_code < 500, response.get_data(as_text=True)
    if response.status_code >= 400:
        assert response.is_json


def in_a_plan(billing_period: str) -> bool:
    """Whether one of the resource's plans is in force for part of the billing period (in the ledger's zone)."""
    period = dt.date.fromisoformat(billing_period)
    start, end = clock.period_start(period), clock.period_start(clock.next_period(period))
    return any(clock.parse_datetime(s) < end and (e is None or clock.parse_datetime(e) > start) for _, s, e in PLANS)


def assert_views_hold(client):
    """Every record has four-digit dates and lies in a period one of its resource's plans covers."""
    records = client.get(f"{USAGES}?page_size=300", headers=auth("staff")).get_json()
    for entry in records:
        assert STORED.match(entry["date"]) and STORED.match(entry["created"]), entry
        assert in_a_plan(entry["billing_period"]), entry
    for entry in client.get(f"{USER_USAGES}?page_size=300", headers=auth("staff")).get_json():
        assert STORED.match(entry["date"]) and STORED.match(entry["modified"]), entry


@given(moment=moments | EDGES, policy=st.sampled_from(["none", "zero"]), component=st.sampled_from(["cpu", "storage"]))
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None, derandomize=CI)
def fuzzed_writes(client, record, moment, policy, component):
    date = wire_date(moment)
    report = {"resource": RESOURCE, "date": date, "usages": [{"type": component, "amount": "2", "missing_usage_policy": policy}]}
    for user in ("staff", "provider-owner"):
        assert_no_fault(client.post(f"{USAGES}set_usage/", json=report, headers=auth(user)))
        share = {"username": "ann", "usage": "1", "date": date}
        assert_no_fault(client.post(f"{USAGES}{record}/set_user_usage/", json=share, headers=auth(user)))
        assert_no_fault(client.post(f"{USAGES}{record}/set_user_usages/", json={"usages": [share]}, headers=auth(user)))
    day = date[:10]
    for query in (f"date_after={day}", f"date_before={day}", f"billing_period={day}",
                  f"billing_period_year={moment.year}", f"component_usage_billing_period={day}"):
        assert_no_fault(client.get(f"{USAGES}?{query}", headers=auth("staff")))
        assert_no_fault(client.get(f"{USER_USAGES}?{query}", headers=auth("staff")))
    assert_views_hold(client)


def test_no_date_in_any_zone_is_a_fault_an_unpadded_date_or_outside_the_plans(client, record, zone):
    fuzzed_writes(client, record)


@pytest.mark.parametrize("zone, date", [
    ("Europe/Berlin", "0001-01-01T00:00:00Z"), ("America/New_York", "0001-01-01T00:00:00Z"),
    ("Pacific/Kiritimati", "9999-12-31T23:59:59Z"), ("UTC", "9999-12-31T23:59:59Z"),
])
def test_a_date_whose_billing_period_cannot_be_represented_is_a_400(client, record, monkeypatch, zone, date):
    monkeypatch.setenv("LEDGER_TIMEZONE", zone)
    monkeypatch.setenv("LEDGER_NOW", "9999-12-31T23:59:59Z" if date.startswith("0001") else "2026-03-15T12:00:00Z")
    expected = {"date": [f"The billing period of this date cannot be represented in the time zone {zone}."]}
    report = {"resource": RESOURCE, "date": date, "usages": [{"type": "cpu", "amount": "2"}]}
    for path, body in ((f"{USAGES}set_usage/", report), (f"{USAGES}{record}/set_user_usage/", {"username": "ann", "date": date})):
        response = client.post(path, json=body, headers=auth("staff"))
        assert (response.status_code, response.get_json()) == (400, expected)
    response = client.post(f"{USAGES}{record}/set_user_usages/", json={"usages": [{"username": "ann", "date": date}]},
                           headers=auth("staff"))
    assert (response.status_code, response.get_json()) == (400, {"usages": [expected]})
