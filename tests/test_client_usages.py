"""Wire compatibility: the official waldur-api-client 8.1.3 against a live `ledger serve`."""

import datetime as dt
from uuid import UUID

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_count as count_usages,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_list as list_usages,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_retrieve as retrieve_usage,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_set_usage as set_usage,
)
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models import ComponentUsageCreateRequest, ComponentUsageItemRequest
from waldur_api_client.models.component_usage_field_enum import ComponentUsageFieldEnum
from waldur_api_client.models.component_usage_o_enum import ComponentUsageOEnum
from waldur_api_client.models.missing_usage_policy_enum import MissingUsagePolicyEnum

from ledger.commands import usage
from ledger.rules.access import Caller

from .conftest import ON_BOTH_BACKENDS
from .world import CLIENT, OFFERING, PLAN_PERIOD, PROJECT, RESOURCE, token

pytestmark = ON_BOTH_BACKENDS


@pytest.fixture
def staff(live_server):
    with AuthenticatedClient(base_url=live_server, token=token("staff")) as client:
        yield client


def report(client, resource=RESOURCE, **amounts):
    body = ComponentUsageCreateRequest(
        resource=UUID(resource),
        usages=[ComponentUsageItemRequest(type_=kind, amount=str(amount)) for kind, amount in amounts.items()],
    )
    return set_usage.sync_detailed(client=client, body=body)


def test_set_usage_creates_then_updates_a_record(staff):
    assert report(staff, cpu="10.5").status_code == 201
    assert report(staff, cpu="11").status_code == 201
    records = list_usages.sync(client=staff, resource_uuid=UUID(RESOURCE), type_="cpu")
    assert len(records) == 1
    record = records[0]
    assert record.usage == "11.00"
    assert record.type_ == "cpu" and record.name == "CPU hours" and record.measured_unit == "h"
    assert record.billing_period == dt.date(2026, 3, 1)
    assert record.resource_uuid == UUID(RESOURCE)
    assert record.offering_uuid == UUID(OFFERING)
    assert record.project_uuid == PROJECT and record.customer_uuid == CLIENT
    assert record.missing_usage_policy == MissingUsagePolicyEnum.NONE and record.recurring is False
    assert record.modified_by == 1
    assert record.date.tzinfo is not None


def test_set_usage_with_plan_period_and_policy(staff):
    body = ComponentUsageCreateRequest(
        plan_period=UUID(PLAN_PERIOD),
        usages=[ComponentUsageItemRequest(type_="storage", amount="100", missing_usage_policy=MissingUsagePolicyEnum.REUSE)],
    )
    assert set_usage.sync_detailed(client=staff, body=body).status_code == 201
    (record,) = list_usages.sync(client=staff, type_="storage")
    assert record.recurring is True and record.missing_usage_policy == MissingUsagePolicyEnum.REUSE


def test_list_filters_count_and_retrieve(staff):
    report(staff, cpu=1, ram=2, storage=3)
    assert count_usages.sync(client=staff) == 3
    assert count_usages.sync(client=staff, offering_uuid=UUID(OFFERING), type_="ram") == 1
    assert count_usages.sync(client=staff, project_uuid=UUID(PROJECT)) == 3
    assert count_usages.sync(client=staff, customer_uuid=UUID(CLIENT)) == 3
    assert count_usages.sync(client=staff, billing_period=dt.date(2026, 3, 1)) == 3
    assert count_usages.sync(client=staff, billing_period=dt.date(2026, 2, 1)) == 0
    assert count_usages.sync(client=staff, billing_period_month=3, billing_period_year=2026) == 3
    assert count_usages.sync(client=staff, date_after=dt.date(2026, 3, 15), date_before=dt.date(2026, 3, 15)) == 3
    assert count_usages.sync(client=staff, date_after=dt.date(2026, 3, 16)) == 0
    assert count_usages.sync(client=staff, resource=f"http://x/api/marketplace-resources/{RESOURCE}/") == 3
    assert count_usages.sync(client=staff, missing_usage_policy=[MissingUsagePolicyEnum.NONE]) == 3
    assert count_usages.sync(client=staff, missing_usage_policy=[MissingUsagePolicyEnum.ZERO]) == 0
    ordered = list_usages.sync(client=staff, o=[ComponentUsageOEnum.VALUE_2])  # "-usage"
    assert [r.usage for r in ordered] == ["3.00", "2.00", "1.00"]
    first = ordered[0]
    again = retrieve_usage.sync(client=staff, uuid=first.uuid)
    assert again.to_dict() == first.to_dict()


def test_field_selection(staff):
    report(staff, cpu=1)
    (record,) = list_usages.sync(client=staff, field=[ComponentUsageFieldEnum.USAGE, ComponentUsageFieldEnum.TYPE])
    assert record.to_dict() == {"usage": "1.00", "type": "cpu"}


def test_sync_all_follows_every_page(staff, ledger, now):
    caller = Caller(id=1, username="staff", is_staff=True)
    for month in range(1, 4):
        now(f"2026-{month:02d}-10T00:00:00Z")
        items = [usage.UsageItem(type=kind, amount=f"{month}.00") for kind in ("cpu", "ram", "storage", "license")]
        usage.set_usage(ledger, caller, usage.SetUsage(items=items, resource_uuid=RESOURCE))
    response = list_usages.sync_detailed(client=staff, page_size=5, page=2)
    assert response.headers["x-result-count"] == "12"
    assert 'rel="next"' in response.headers["link"] and 'rel="prev"' in response.headers["link"]
    everything = list_usages.sync_all(client=staff)
    assert len(everything) == 12 and len({r.uuid for r in everything}) == 12


def test_unknown_record_is_a_404(staff):
    with pytest.raises(UnexpectedStatus) as error:
        retrieve_usage.sync(client=staff, uuid=UUID(int=7))
    assert error.value.status_code == 404
