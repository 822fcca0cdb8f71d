"""Wire compatibility of user usages: the official waldur-api-client 8.1.3 against a live `ledger serve`."""

import datetime as dt
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_retrieve as retrieve_usage,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_set_user_usage as set_user_usage,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_set_user_usages as set_user_usages,
)
from waldur_api_client.api.marketplace_component_user_usages import (
    marketplace_component_user_usages_count as count_user_usages,
)
from waldur_api_client.api.marketplace_component_user_usages import (
    marketplace_component_user_usages_list as list_user_usages,
)
from waldur_api_client.api.marketplace_component_user_usages import (
    marketplace_component_user_usages_retrieve as retrieve_user_usage,
)
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models import ComponentUserUsageBulkCreateRequest, ComponentUserUsageCreateRequest
from waldur_api_client.models.component_user_usage_field_enum import ComponentUserUsageFieldEnum
from waldur_api_client.models.component_user_usage_o_enum import ComponentUserUsageOEnum

from ledger.commands import usage
from ledger.log import events
from ledger.rules.access import Caller

from .conftest import ON_BOTH_BACKENDS
from .world import CLIENT, OFFERING, OFFERING_USER, PROJECT, RESOURCE, token

pytestmark = ON_BOTH_BACKENDS

MARCH = dt.date(2026, 3, 1)


@pytest.fixture
def staff(live_server):
    with AuthenticatedClient(base_url=live_server, token=token("staff")) as client:
        yield client


@pytest.fixture
def record(ledger) -> UUID:
    """A March cpu record of RESOURCE at usage 0."""
    caller = Caller(id=1, username="staff", is_staff=True)
    usage.set_usage(ledger, caller, usage.SetUsage(items=[usage.UsageItem("cpu", "0.00")], resource_uuid=RESOURCE))
    return UUID(events.usage_record_uuid(RESOURCE, "cpu", MARCH.isoformat()))


def test_set_user_usage_then_list_and_retrieve(staff, live_server, record):
    body = ComponentUserUsageCreateRequest(
        username="alice", usage="2.5", user=f"{live_server}/api/marketplace-offering-users/{OFFERING_USER}/"
    )
    assert set_user_usage.sync_detailed(uuid=record, client=staff, body=body).status_code == 201
    (entry,) = list_user_usages.sync(client=staff)
    assert entry.username == "alice" and entry.usage == "2.50"
    assert entry.user == f"{live_server}/api/marketplace-offering-users/{OFFERING_USER}/"
    assert entry.component_usage == f"{live_server}/api/marketplace-component-usages/{record.hex}/"
    assert entry.component_type == "cpu" and entry.measured_unit == "h"
    assert entry.billing_period == MARCH and entry.date.tzinfo is not None
    assert entry.resource_uuid == UUID(RESOURCE) and entry.offering_uuid == UUID(OFFERING)
    assert entry.project_uuid == UUID(PROJECT) and entry.customer_uuid == UUID(CLIENT)
    assert entry.created.tzinfo is not None and entry.modified == entry.created
    again = retrieve_user_usage.sync(uuid=entry.uuid, client=staff)
    assert again.to_dict() == entry.to_dict()


def test_set_user_usages_records_all_and_totals_the_record(staff, record):
    body = ComponentUserUsageBulkCreateRequest(usages=[
        ComponentUserUsageCreateRequest(username="alice", usage="1.25"),
        ComponentUserUsageCreateRequest(username="bob", usage="2"),
    ])
    assert set_user_usages.sync_detailed(uuid=record, client=staff, body=body).status_code == 201
    assert count_user_usages.sync(client=staff) == 2
    assert retrieve_usage.sync(uuid=record, client=staff).usage == "3.25"


def test_set_user_usage_with_a_date_in_another_month(staff, record):
    body = ComponentUserUsageCreateRequest(username="alice", usage="4", date=dt.datetime(2026, 2, 10, tzinfo=dt.timezone.utc))
    assert set_user_usage.sync_detailed(uuid=record, client=staff, body=body).status_code == 201
    (entry,) = list_user_usages.sync(client=staff, component_usage_billing_period=dt.date(2026, 2, 1))
    assert entry.billing_period == dt.date(2026, 2, 1)


def test_count_filters_ordering_and_fields(staff, record):
    body = ComponentUserUsageBulkCreateRequest(usages=[
        ComponentUserUsageCreateRequest(username=name, usage=amount)
        for name, amount in (("alice", "3"), ("Alicia", "1"), ("bob", "2"))
    ])
    set_user_usages.sync_detailed(uuid=record, client=staff, body=body)
    assert count_user_usages.sync(client=staff, username="ALI") == 2
    assert count_user_usages.sync(client=staff, component_usage_billing_period=MARCH) == 3
    assert count_user_usages.sync(client=staff, component_usage_billing_period=dt.date(2026, 2, 1)) == 0
    assert count_user_usages.sync(client=staff, resource_uuid=UUID(RESOURCE), type_="cpu") == 3
    assert count_user_usages.sync(client=staff, offering_uuid=UUID(OFFERING), billing_period_month=3) == 3
    ordered = list_user_usages.sync(client=staff, o=[ComponentUserUsageOEnum.VALUE_1])  # "-usage"
    assert [entry.usage for entry in ordered] == ["3.00", "2.00", "1.00"]
    (first, *_) = list_user_usages.sync(
        client=staff, o=[ComponentUserUsageOEnum.USERNAME],
        field=[ComponentUserUsageFieldEnum.USERNAME, ComponentUserUsageFieldEnum.USAGE],
    )
    assert first.to_dict() == {"username": "Alicia", "usage": "1.00"}


def test_sync_all_follows_every_page(staff, record):
    usernames = [f"user{n:03d}" for n in range(105)]  # sync_all asks for pages of 100
    body = ComponentUserUsageBulkCreateRequest(
        usages=[ComponentUserUsageCreateRequest(username=name, usage="1") for name in usernames]
    )
    set_user_usages.sync_detailed(uuid=record, client=staff, body=body)
    everything = list_user_usages.sync_all(client=staff)
    assert sorted(entry.username for entry in everything) == usernames


def test_unknown_record_is_a_404(staff):
    body = ComponentUserUsageCreateRequest(username="alice")
    with pytest.raises(UnexpectedStatus) as error:
        set_user_usage.sync_detailed(uuid=UUID(int=7), client=staff, body=body)
    assert error.value.status_code == 404
    with pytest.raises(UnexpectedStatus) as error:
        retrieve_user_usage.sync(uuid=UUID(int=7), client=staff)
    assert error.value.status_code == 404
