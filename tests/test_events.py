"""Event data is validated on append and on read; old shapes are upcast on read."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import fields

from ledger.database import Ledger
from ledger.log import events
from ledger.log.events import EventDataError, Strict
from ledger.log.records import NewEvent, StoredEvent
from projections import runner

CUSTOMER = "0a000000000000000000000000000001"


def stored(event_type: str, data: dict, schema_version: int = 1) -> StoredEvent:
    return StoredEvent(
        seq=1, event_id="e" * 32, stream=f"customer/{CUSTOMER}", version=1, type=event_type,
        schema_version=schema_version, occurred_at="2026-03-15T12:00:00.000000Z",
        recorded_at="2026-03-15T12:00:00.000000Z", actor_id=None, data=data, prev_hash="0" * 64, hash="1" * 64,
    )


class CustomerV1(Strict):
    """An old shape of CustomerDefined: the name was called `title`."""

    uuid = fields.String(required=True)
    title = fields.String(required=True)


class CustomerV2(Strict):
    """A middle shape: the name split into `title` and `suffix`."""

    uuid = fields.String(required=True)
    title = fields.String(required=True)
    suffix = fields.String(required=True)


@pytest.fixture
def customer_v1_registered(monkeypatch):
    """CustomerDefined as if its version 1 had `title` and today's shape were version 2."""
    monkeypatch.setitem(events.SCHEMAS, ("CustomerDefined", 2), events.SCHEMAS[("CustomerDefined", 1)])
    monkeypatch.setitem(events.SCHEMAS, ("CustomerDefined", 1), CustomerV1())
    monkeypatch.setitem(events.UPCASTERS, ("CustomerDefined", 1), lambda d: {"uuid": d["uuid"], "name": d["title"]})
    monkeypatch.setitem(events.CURRENT_VERSION, "CustomerDefined", 2)


def test_new_accepts_valid_data_in_the_current_version():
    event = events.new(f"customer/{CUSTOMER}", 1, "CustomerDefined", {"uuid": CUSTOMER, "name": "Org"}, "t")
    assert event.schema_version == events.CURRENT_VERSION["CustomerDefined"]
    assert event.data == {"uuid": CUSTOMER, "name": "Org"}


@pytest.mark.parametrize(
    "data",
    [
        {"uuid": CUSTOMER},
        {"uuid": CUSTOMER, "name": "Org", "extra": 1},
        {"uuid": "not-a-uuid", "name": "Org"},
        {"uuid": CUSTOMER.upper(), "name": "Org"},
        {"uuid": CUSTOMER, "name": 5},
        {"uuid": CUSTOMER, "name": None},
    ],
    ids=["missing-field", "unknown-field", "bad-uuid", "uppercase-uuid", "wrong-type", "null"],
)
def test_new_rejects_data_that_does_not_fit_the_schema(data):
    with pytest.raises(EventDataError, match="CustomerDefined v1"):
        events.new(f"customer/{CUSTOMER}", 1, "CustomerDefined", data, "t")


def test_new_rejects_a_bad_value_in_nested_data():
    data = {"uuid": CUSTOMER, "name": "HPC", "customer_uuid": CUSTOMER, "components": [
        {"type": "cpu", "name": "CPU", "measured_unit": "h", "billing_type": "free",
         "limit_period": None, "limit_amount": None},
    ]}
    with pytest.raises(EventDataError, match="billing_type"):
        events.new("offering/x", 1, "OfferingDefined", data, "t")


def test_new_rejects_an_unknown_event_type():
    with pytest.raises(EventDataError, match="unknown event type 'CustomerRenamed'"):
        events.new(f"customer/{CUSTOMER}", 1, "CustomerRenamed", {"uuid": CUSTOMER}, "t")


def test_upgrade_returns_a_current_event_unchanged():
    event = stored("CustomerDefined", {"uuid": CUSTOMER, "name": "Org"})
    assert events.upgrade(event) is event


def test_upgrade_rejects_bad_stored_data():
    with pytest.raises(EventDataError, match="CustomerDefined v1"):
        events.upgrade(stored("CustomerDefined", {"uuid": CUSTOMER, "name": "Org", "token": "clear"}))


def test_upgrade_rejects_an_unknown_schema_version():
    with pytest.raises(EventDataError, match="version 9"):
        events.upgrade(stored("CustomerDefined", {"uuid": CUSTOMER, "name": "Org"}, schema_version=9))


def test_upgrade_brings_an_old_shape_to_the_current_one(customer_v1_registered):
    old = stored("CustomerDefined", {"uuid": CUSTOMER, "title": "Org"}, schema_version=1)
    current = events.upgrade(old)
    assert current.schema_version == 2
    assert current.data == {"uuid": CUSTOMER, "name": "Org"}
    assert (current.seq, current.hash) == (old.seq, old.hash)


def test_upgrade_validates_the_old_shape_against_its_own_schema(customer_v1_registered):
    with pytest.raises(EventDataError, match="CustomerDefined v1"):
        events.upgrade(stored("CustomerDefined", {"uuid": CUSTOMER, "name": "Org"}, schema_version=1))


def test_upgrade_validates_what_the_upcasters_produce(customer_v1_registered, monkeypatch):
    monkeypatch.setitem(events.UPCASTERS, ("CustomerDefined", 1), lambda d: {"uuid": d["uuid"]})
    with pytest.raises(EventDataError, match="CustomerDefined v2"):
        events.upgrade(stored("CustomerDefined", {"uuid": CUSTOMER, "title": "Org"}, schema_version=1))


def test_upgrade_chains_upcasters_through_every_version(monkeypatch):
    monkeypatch.setitem(events.SCHEMAS, ("CustomerDefined", 3), events.SCHEMAS[("CustomerDefined", 1)])
    monkeypatch.setitem(events.SCHEMAS, ("CustomerDefined", 2), CustomerV2())
    monkeypatch.setitem(events.SCHEMAS, ("CustomerDefined", 1), CustomerV1())
    monkeypatch.setitem(events.UPCASTERS, ("CustomerDefined", 1), lambda d: d | {"suffix": "Ltd"})
    monkeypatch.setitem(
        events.UPCASTERS, ("CustomerDefined", 2), lambda d: {"uuid": d["uuid"], "name": f"{d['title']} {d['suffix']}"}
    )
    monkeypatch.setitem(events.CURRENT_VERSION, "CustomerDefined", 3)
    current = events.upgrade(stored("CustomerDefined", {"uuid": CUSTOMER, "title": "Org"}, schema_version=1))
    assert (current.schema_version, current.data) == (3, {"uuid": CUSTOMER, "name": "Org Ltd"})


def test_new_writes_the_current_version_after_a_schema_change(customer_v1_registered):
    event = events.new(f"customer/{CUSTOMER}", 1, "CustomerDefined", {"uuid": CUSTOMER, "name": "Org"}, "t")
    assert event.schema_version == 2


def test_views_see_old_events_in_the_current_shape(customer_v1_registered, tmp_path):
    ledger = Ledger(str(tmp_path / "ledger.db"))
    ledger.init()
    old = NewEvent(f"customer/{CUSTOMER}", 1, "CustomerDefined", {"uuid": CUSTOMER, "title": "Org"},
                   "2026-03-15T12:00:00.000000Z", schema_version=1)
    ledger.write(lambda: [old])
    runner.rebuild(ledger.store)
    name = ledger.conn.execute("SELECT name FROM customers WHERE uuid = ?", (CUSTOMER,)).fetchone()
    ledger.close()
    assert name == ("Org",)


USER = {"id": 9, "username": "nine", "is_staff": False, "is_support": False, "token_digest": None}
PERIOD = {"billing_period": "2026-04-01", "starts_at": "2026-03-31T22:00:00.000000Z", "timezone": "Europe/Berlin"}
RESOURCE_DATA = {"uuid": CUSTOMER, "name": "r", "offering_uuid": CUSTOMER, "project_uuid": CUSTOMER, "state": "OK",
                 "plan_periods": [{"uuid": CUSTOMER, "start": "2026-01-01T00:00:00.000000Z", "end": None}], "backend_id": ""}


def test_the_stricter_schemas_accept_what_the_ledger_writes():
    for event_type, data in (("UserDefined", USER), ("BillingPeriodStarted", PERIOD), ("ResourceDefined", RESOURCE_DATA)):
        events.new("s", 1, event_type, data, "t")


@pytest.mark.parametrize(("event_type", "data", "field"), [
    ("UserDefined", USER | {"id": True}, "id"),
    ("UserDefined", USER | {"id": 9.0}, "id"),
    ("UserDefined", USER | {"id": 2**63}, "id"),
    ("UserDefined", USER | {"id": 0}, "id"),
    ("UserDefined", USER | {"is_staff": 0}, "is_staff"),
    ("UserDefined", USER | {"is_support": "false"}, "is_support"),
    ("BillingPeriodStarted", PERIOD | {"billing_period": "2026-04-02"}, "billing_period"),
    ("BillingPeriodStarted", PERIOD | {"billing_period": "0000-01-01"}, "billing_period"),
    ("BillingPeriodStarted", PERIOD | {"timezone": "Europe/Atlantis"}, "timezone"),
    ("BillingPeriodStarted", PERIOD | {"starts_at": "2026-04-01T00:00:00.000000Z"}, "starts_at"),
    ("BillingPeriodStarted", PERIOD | {"starts_at": "2026-03-31 22:00"}, "starts_at"),
    ("ResourceDefined", RESOURCE_DATA | {"plan_periods": [{"uuid": CUSTOMER, "start": "2026-02-30T00:00:00.000000Z",
                                                           "end": None}]}, "start"),
], ids=["id-true", "id-float", "id-past-sqlite", "id-zero", "is_staff-0", "is_support-text", "period-15th",
        "period-year-0", "unknown-zone", "starts-at-utc-midnight", "starts-at-not-stored", "nested-february-30"])
def test_the_schemas_take_exact_json_types_and_real_dates(event_type, data, field):
    with pytest.raises(EventDataError, match=field):
        events.new("s", 1, event_type, data, "t")


@given(st.text())
def test_a_records_uuid_is_the_uuid5_of_its_key_in_the_ledgers_namespace(name):
    assert events.name_uuid(name) == uuid.uuid5(events.RECORD_NAMESPACE, name).hex
