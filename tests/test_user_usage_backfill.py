"""A user usage's `date` obeys set_usage's backfill rule for the billing period it lands in."""

import pytest

from ledger.commands import usage
from ledger.log import events
from ledger.rules.access import Caller

from .conftest import auth
from .world import RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)
PAST_ONLY_FOR_PREPAID = (
    "Service providers can only specify date for limit-based or prepaid billing components"
    " when backfilling past billing periods"
)


def record_of(ledger, component: str) -> str:
    """The March record of `component` of RESOURCE, reported at 0 by staff."""
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=[usage.UsageItem(component, "0.00")], resource_uuid=RESOURCE))
    return events.usage_record_uuid(RESOURCE, component, "2026-03-01")


def post(client, record: str, action: str, date: str, user: str):
    item = {"username": "alice", "usage": "5", "date": date}
    body = item if action == "set_user_usage" else {"usages": [item]}
    return client.post(f"/api/marketplace-component-usages/{record}/{action}/", json=body, headers=auth(user))


def set_usage_answer(client, component: str, date: str, user: str):
    body = {"resource": RESOURCE, "date": date, "usages": [{"type": component, "amount": "5"}]}
    response = client.post("/api/marketplace-component-usages/set_usage/", json=body, headers=auth(user))
    return response.status_code, response.get_json()


@pytest.mark.parametrize("user", ["provider-owner", "offering-manager"])
@pytest.mark.parametrize("action", ["set_user_usage", "set_user_usages"])
def test_a_provider_cannot_reach_a_past_month_of_a_usage_billed_component(client, ledger, user, action):
    record = record_of(ledger, "cpu")
    before = ledger.store.count()
    response = post(client, record, action, "2026-02-10T00:00:00Z", user)
    assert set_usage_answer(client, "cpu", "2026-02-10T00:00:00Z", user) == (400, {"non_field_errors": [PAST_ONLY_FOR_PREPAID]})
    errors = {"non_field_errors": [PAST_ONLY_FOR_PREPAID]}
    assert (response.status_code, response.get_json()) == (400, errors if action == "set_user_usage" else {"usages": [errors]})
    assert ledger.store.count() == before
    assert client.get("/api/marketplace-component-usages/?billing_period=2026-02-01", headers=auth("staff")).get_json() == []


@pytest.mark.parametrize("action", ["set_user_usage", "set_user_usages"])
def test_a_provider_may_date_within_the_current_month_and_staff_anywhere(client, ledger, action):
    record = record_of(ledger, "cpu")
    assert post(client, record, action, "2026-03-02T00:00:00Z", "provider-owner").status_code == 201
    assert post(client, record, action, "2026-02-10T00:00:00Z", "staff").status_code == 201


@pytest.mark.parametrize("component", ["storage", "license"])
def test_a_provider_may_reach_a_past_month_of_a_limit_or_prepaid_component(client, ledger, component):
    record = record_of(ledger, component)
    assert post(client, record, "set_user_usages", "2026-02-10T00:00:00Z", "provider-owner").status_code == 201
    february = events.usage_record_uuid(RESOURCE, component, "2026-02-01")
    assert client.get(f"/api/marketplace-component-usages/{february}/", headers=auth("staff")).get_json()["usage"] == "5.00"
