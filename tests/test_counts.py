"""List counts are kept until rows change: a report that changes a record's values (the site agents'
usual write) or adds records leaves the counts of filters on scopes, type and billing period as they
were, and only the rows added since are counted to them, instead of counting again (25 ms for an
offering of a million records, up to a second for user usages)."""

import json

import pytest

from ledger.cli import load_catalog
from ledger.commands import usage
from ledger.log import events
from ledger.rules import clock
from ledger.rules.access import Caller
from projections import runner
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
    """Each count a view took, in order: its name, and the row mark it counted past (0: all rows)."""
    counted = []
    for view in (usage_view, user_usage_view):
        def count_since(conn, scopes, filters, mark=0, original=view.count_since, name=view.NAME):
            counted.append((name, mark))
            return original(conn, scopes, filters, mark)
        monkeypatch.setattr(view, "count_since", count_since)
    return counted


def result_count(client, path, user="staff", **params) -> int:
    response = client.get(path, query_string=params, headers=auth(user))
    assert response.status_code == 200
    return int(response.headers["X-Result-Count"])


def test_reports_of_values_and_of_new_rows_keep_the_counts_and_count_only_the_rows_added(client, ledger, counting):
    report(ledger)
    share(ledger, "alice")
    lists = ((USAGES, {"offering_uuid": OFFERING, "type": "cpu"}), (USAGES, {}), (USER_USAGES, {"username": "ali"}),
             (USER_USAGES, {}))
    assert [result_count(client, path, **params) for path, params in lists] == [1, 1, 1, 1]
    assert [mark for _, mark in counting] == [0, 0, 0, 0]
    counting.clear()
    assert [result_count(client, path, **params) for path, params in lists] == [1, 1, 1, 1]
    assert counting == []  # nothing happened since
    report(ledger, amount="2.00")
    share(ledger, "alice", amount="2.00")
    report(ledger, component="ram")  # a new record
    share(ledger, "bob")  # a new user usage
    assert [result_count(client, path, **params) for path, params in lists] == [1, 2, 1, 2]
    assert len(counting) == 4 and all(mark > 0 for _, mark in counting)


def test_a_change_that_removes_rows_counts_again(client, ledger, now, counting):
    report(ledger, policy="reuse")
    now("2026-04-02T00:00:00Z")
    ledger.roll_periods()  # March's value is carried into April
    assert result_count(client, USAGES, offering_uuid=OFFERING) == 2
    counting.clear()
    item = usage.UsageItem(type="cpu", amount="1.00", missing_usage_policy="none")
    march = clock.parse_datetime("2026-03-20T00:00:00Z")
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=[item], resource_uuid=RESOURCE, date=march))  # April's goes
    assert result_count(client, USAGES, offering_uuid=OFFERING) == 1
    assert counting == [("usages", 0)]


def test_a_filter_on_values_that_reports_change_counts_again(client, ledger, now, counting):
    report(ledger)
    assert result_count(client, USAGES, date_after="2026-03-15") == 1
    now("2026-03-16T12:00:00Z")
    report(ledger, amount="2.00")
    assert result_count(client, USAGES, date_after="2026-03-16") == 1
    assert result_count(client, USAGES, date_after="2026-03-15") == 1
    assert len(counting) == 3


def test_a_rebuild_counts_again(client, ledger, counting):
    """A rebuild makes every row anew, under row ids of its own."""
    report(ledger)
    assert result_count(client, USAGES) == 1
    counting.clear()
    runner.rebuild(ledger.store)
    assert result_count(client, USAGES) == 1
    assert counting == [("usages", 0)]


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
            fresh.setattr("api.reading.COUNTS.kept.entries", {})
            fresh.setattr("api.auth.CALLERS.kept.entries", {})
            fresh.setattr("api.reading.VISIBLE.kept.entries", {})
            assert cached == every_count(client, user)
