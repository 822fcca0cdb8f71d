"""List counts are kept until rows change: a report that only changes a record's values (the site
agents' usual write) leaves the counts of filters on scopes, type and billing period as they were,
instead of counting again (25 ms for an offering of a million records, a second for user usages)."""

import json

import pytest

from ledger import events, usage
from ledger.access import Caller
from ledger.cli import load_catalog
from projections import usages as usage_view
from projections import user_usages as user_usage_view

from .conftest import auth
from .world import OFFERING, OTHER_PROJECT, PROJECT, RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)
USAGES, USER_USAGES = "/api/marketplace-component-usages/", "/api/marketplace-component-user-usages/"


def report(ledger, component="cpu", amount="1.00", policy="none"):
    item = usage.UsageItem(type=component, amount=amount, missing_usage_policy=policy)
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=[item], resource_uuid=RESOURCE))


def share(ledger, username, amount="1.00", period="2026-03-01"):
    record = events.usage_record_uuid(RESOURCE, "cpu", period)
    item = usage.UserUsageItem(username=username, usage=amount)
    usage.set_user_usages(ledger, STAFF, usage.SetUserUsages(record, [item]))


@pytest.fixture
def counting(monkeypatch):
    """The filters each view counted for, in order."""
    counted = []
    for view in (usage_view, user_usage_view):
        def count(conn, scopes, filters, original=view.count, name=view.NAME):
            counted.append((name, dict(filters)))
            return original(conn, scopes, filters)
        monkeypatch.setattr(view, "count", count)
    return counted


def result_count(client, path, user="staff", **params) -> int:
    response = client.get(path, query_string=params, headers=auth(user))
    assert response.status_code == 200
    return int(response.headers["X-Result-Count"])


def test_a_report_that_changes_only_values_keeps_the_counts(client, ledger, now, counting):
    report(ledger)
    share(ledger, "alice")
    assert result_count(client, USAGES, offering_uuid=OFFERING, type="cpu") == 1
    assert result_count(client, USER_USAGES, username="ali") == 1
    counting.clear()
    now("2026-03-15T13:00:00Z")  # a row made at the same instant is taken for a new one: counted again
    report(ledger, amount="2.00")
    share(ledger, "alice", amount="2.00")
    assert result_count(client, USAGES, offering_uuid=OFFERING, type="cpu") == 1
    assert result_count(client, USER_USAGES, username="ali") == 1
    assert counting == []
    report(ledger, component="ram")  # a new record
    assert result_count(client, USAGES, offering_uuid=OFFERING) == 2
    share(ledger, "bob")
    assert result_count(client, USER_USAGES) == 2
    assert [name for name, _ in counting] == ["usages", "user_usages"]


def test_a_filter_on_values_that_reports_change_counts_again(client, ledger, now, counting):
    report(ledger)
    assert result_count(client, USAGES, date_after="2026-03-15") == 1
    now("2026-03-16T12:00:00Z")
    report(ledger, amount="2.00")
    assert result_count(client, USAGES, date_after="2026-03-16") == 1
    assert result_count(client, USAGES, date_after="2026-03-15") == 1
    assert len(counting) == 3


def every_count(client, user):
    """Each list's count for a few filters, as the caller gets them over HTTP (cached or not)."""
    return {
        (path, repr(params)): result_count(client, path, user, **params)
        for path in (USAGES, USER_USAGES)
        for params in ({}, {"project_uuid": PROJECT}, {"project_uuid": OTHER_PROJECT}, {"type": "cpu"},
                       {"billing_period": "2026-04-01"})
    }


@pytest.mark.parametrize("user", ["staff", "provider-owner", "project-member", "other-owner"])
def test_cached_counts_are_the_counts_of_the_rows_after_every_kind_of_change(client, ledger, catalog, now, monkeypatch,
                                                                           user):
    """Each step changes rows one way: a new record, new values, a user's share, a carried month,
    the resource moved to another project (and another customer), a role granted."""
    steps = [
        lambda: report(ledger, policy="reuse"),
        lambda: report(ledger, amount="5.00", policy="reuse"),
        lambda: share(ledger, "alice"),
        lambda: share(ledger, "alice", amount="3.00"),
        lambda: (now("2026-04-02T00:00:00Z"), ledger.roll_periods()),
        lambda: share(ledger, "bob", period="2026-04-01"),
        lambda: load_catalog(ledger, json.dumps({**catalog, "resources": [
            {**catalog["resources"][0], "project_uuid": OTHER_PROJECT}, *catalog["resources"][1:]]})),
        lambda: load_catalog(ledger, json.dumps({**catalog, "roles": [
            *catalog["roles"], {"username": "other-owner", "scope": "project", "scope_uuid": PROJECT, "role": "admin"}]})),
    ]
    every_count(client, user)  # counted before any step: each step must make its changes counted
    for step in steps:
        step()
        cached = every_count(client, user)
        with monkeypatch.context() as fresh:
            fresh.setattr("api.reading.COUNTS.entries", {})
            fresh.setattr("api.auth.CALLERS.entries", {})
            assert cached == every_count(client, user)
