"""set_usage's and user usages' decisions on plain state: a command, a target and a caller in, events out."""

import dataclasses
import datetime as dt

import pytest

from ledger.commands.usage import (
    PROVIDER_BACKFILL,
    PermissionDenied,
    SetUsage,
    SetUserUsages,
    Target,
    UsageItem,
    UsageRejected,
    UserUsageItem,
    UserUsageTarget,
    decide,
    decide_user_usages,
)
from ledger.log import events
from ledger.rules import clock
from ledger.rules.access import Caller

from .world import CLIENT, OFFERING, PLAN_PERIOD, PROJECT, PROVIDER, RESOURCE

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)
LAST_MONTH = dt.datetime(2026, 2, 10, tzinfo=UTC)
FUTURE = NOW + dt.timedelta(days=1)

STAFF = Caller(id=1, username="staff", is_staff=True)
OWNER = Caller(id=3, username="provider-owner", customers_owned=frozenset({PROVIDER}))
STRANGER = Caller(id=12, username="stranger", projects=frozenset({PROJECT}))

RESOURCE_ROW = {"uuid": RESOURCE, "name": "vm", "state": "OK", "offering_uuid": OFFERING, "provider_uuid": PROVIDER,
                "project_uuid": PROJECT, "customer_uuid": CLIENT}
PLAN = {"uuid": PLAN_PERIOD, "start": "2025-01-01T00:00:00.000000Z", "end": None}
LATE_PLAN = {"uuid": "0e0000000000000000000000000000c1", "start": "2026-03-05T00:00:00.000000Z", "end": None}
APRIL_PLAN = {**LATE_PLAN, "start": "2026-04-01T00:00:00.000000Z"}
CLOSED_PLAN = {**PLAN, "end": "2026-02-01T00:00:00.000000Z"}
COMPONENTS = {"cpu": "usage", "storage": "limit", "license": "one", "nodes": "fixed"}


def target(**changes) -> Target:
    return dataclasses.replace(Target(RESOURCE_ROW, [PLAN], COMPONENTS, None), **changes)


def item(kind: str = "storage", amount: str = "5.00", policy: str = "none", description: str = "") -> UsageItem:
    return UsageItem(type=kind, amount=amount, description=description, missing_usage_policy=policy)


def report(*items: UsageItem, date: dt.datetime | None = None) -> SetUsage:
    return SetUsage(items=list(items), resource_uuid=RESOURCE, date=date)


def stream(kind: str, period: str = "2026-03-01") -> str:
    return events.usage_stream(RESOURCE, kind, period)


def versions(*kinds: str, period: str = "2026-03-01", at: int = 0) -> dict[str, int]:
    return {stream(kind, period): at for kind in kinds}


def held(usage: str = "5", carried: bool = False, policy: str = "none", description: str = "") -> dict:
    return {"usage": usage, "carried": int(carried), "missing_usage_policy": policy, "description": description,
            "plan_period_uuid": PLAN_PERIOD}


def refusal(command: SetUsage, state: Target, caller: Caller) -> dict:
    with pytest.raises(UsageRejected) as refused:
        decide(command, state, caller, NOW, versions(*COMPONENTS, "bogus"))
    return refused.value.body


# --- set_usage ---

ERRED = {**RESOURCE_ROW, "state": "Erred"}
# Each case fails one check and, where it can, every later one too: the earliest failing check answers.
CHECKS = {
    "target": (Target({}, [], {}, None), STRANGER, [item("bogus")], FUTURE,
               {"non_field_errors": ["Either plan_period or resource should be provided."]}),
    "closed plan period": (target(chosen_plan_period=CLOSED_PLAN, resource=ERRED, plan_periods=[]), STRANGER,
                           [item("bogus")], FUTURE, {"plan_period": ["Billing period is closed."]}),
    "state": (target(resource=ERRED, plan_periods=[]), STRANGER, [item("bogus")], FUTURE,
              {"resource": ["Resource is not in valid state."]}),
    "plan": (target(plan_periods=[]), STRANGER, [item("bogus")], FUTURE,
             {"non_field_errors": ["Resource must have a plan to report usage"]}),
    "components": (target(plan_periods=[APRIL_PLAN]), STRANGER, [item("nodes"), item("bogus"), item("cpu"), item("nodes")],
                   FUTURE, {"non_field_errors": ["These components are invalid: bogus, nodes."]}),
    "future date": (target(plan_periods=[APRIL_PLAN]), STRANGER, [item("cpu")], FUTURE,
                    {"date": ["Cannot submit usage for future dates"]}),
    "backfill by a consumer": (
        target(plan_periods=[APRIL_PLAN]), STRANGER, [item("cpu")], LAST_MONTH,
        {"non_field_errors": ["Only staff users and service providers can specify date for backfilling"]},
    ),
    "backfill of a usage component": (target(plan_periods=[APRIL_PLAN]), OWNER, [item("storage"), item("cpu")], LAST_MONTH,
                                      {"non_field_errors": [PROVIDER_BACKFILL]}),
    "plan in force": (target(plan_periods=[APRIL_PLAN]), STAFF, [item("cpu")], None,
                      {"non_field_errors": ["Resource must have a plan to report usage"]}),
}


@pytest.mark.parametrize("check", CHECKS)
def test_set_usage_checks_answer_in_order(check):
    state, caller, items, date, body = CHECKS[check]
    assert refusal(report(*items, date=date), state, caller) == body


def test_a_caller_who_may_not_write_is_denied_before_the_plan_in_force_is_looked_for():
    with pytest.raises(PermissionDenied):
        decide(report(item()), target(plan_periods=[APRIL_PLAN]), STRANGER, NOW, versions("storage"))


def test_an_open_chosen_plan_period_is_not_closed():
    (decided,) = decide(report(item()), target(chosen_plan_period=LATE_PLAN), OWNER, NOW, versions("storage"))
    assert decided.data["plan_period_uuid"] == LATE_PLAN["uuid"]


def test_providers_backfill_limit_components_and_staff_any_component():
    assert decide(report(item("storage"), date=LAST_MONTH), target(), OWNER, NOW, versions("storage", period="2026-02-01"))
    assert decide(report(item("cpu"), date=LAST_MONTH), target(), STAFF, NOW, versions("cpu", period="2026-02-01"))


def test_a_provider_dates_a_usage_component_within_the_current_month():
    (decided,) = decide(report(item("cpu"), date=NOW - dt.timedelta(days=2)), target(), OWNER, NOW, versions("cpu"))
    assert decided.occurred_at == "2026-03-08T12:00:00.000000Z"


def test_each_item_appends_a_usage_reported_event_on_its_record_stream():
    command = report(item("storage", "5.00", "reuse", "nightly"), item("cpu", "2.50"))
    decided = decide(command, target(), OWNER, NOW, {stream("storage"): 2, stream("cpu"): 0})
    assert [(e.stream, e.version, e.type, e.occurred_at, e.actor_id) for e in decided] == [
        (stream("storage"), 3, "UsageReported", "2026-03-10T12:00:00.000000Z", OWNER.id),
        (stream("cpu"), 1, "UsageReported", "2026-03-10T12:00:00.000000Z", OWNER.id),
    ]
    assert decided[0].data == {
        "resource_uuid": RESOURCE, "type": "storage", "billing_period": "2026-03-01", "plan_period_uuid": PLAN_PERIOD,
        "amount": "5.00", "description": "nightly", "missing_usage_policy": "reuse",
    }


def test_versions_increment_per_stream():
    command = report(item("storage", "1.00"), item("cpu", "1.00"), item("storage", "2.00"))
    decided = decide(command, target(), OWNER, NOW, {stream("storage"): 4, stream("cpu"): 0})
    assert [(e.stream, e.version) for e in decided] == [(stream("storage"), 5), (stream("cpu"), 1), (stream("storage"), 6)]


def test_an_unchanged_item_appends_nothing():
    state = target(held={"storage": held("5"), "cpu": held("1")})
    decided = decide(report(item("storage", "5.00"), item("cpu", "2.00")), state, OWNER, NOW, versions("storage", "cpu"))
    assert [e.data["type"] for e in decided] == ["cpu"]


@pytest.mark.parametrize("record", [held("5", policy="reuse"), held("5", description="nightly"),
                                    {**held("5"), "plan_period_uuid": LATE_PLAN["uuid"]}, held("5", carried=True)])
def test_an_item_differing_from_its_record_or_on_a_carried_record_is_appended(record):
    decided = decide(report(item("storage", "5.00")), target(held={"storage": record}), OWNER, NOW, versions("storage"))
    assert len(decided) == 1


def test_a_type_is_left_out_only_when_every_item_of_it_is_unchanged():
    state = target(held={"storage": held("5")})
    assert decide(report(item("storage", "5.00"), item("storage", "5")), state, OWNER, NOW, versions("storage")) == []
    decided = decide(report(item("storage", "7.00"), item("storage", "5.00")), state, OWNER, NOW, versions("storage"))
    assert [(e.version, e.data["amount"]) for e in decided] == [(1, "7.00"), (2, "5.00")]


def test_the_plan_period_is_the_chosen_one_or_the_latest_starting_in_force():
    chosen = decide(report(item()), target(chosen_plan_period=PLAN, plan_periods=[PLAN, LATE_PLAN]), OWNER, NOW,
                    versions("storage"))
    in_force = decide(report(item()), target(plan_periods=[PLAN, LATE_PLAN]), OWNER, NOW, versions("storage"))
    assert (chosen[0].data["plan_period_uuid"], in_force[0].data["plan_period_uuid"]) == (PLAN_PERIOD, LATE_PLAN["uuid"])


def test_a_dated_report_lands_in_the_month_of_its_date():
    (decided,) = decide(report(item("cpu"), date=LAST_MONTH), target(), STAFF, NOW, versions("cpu", period="2026-02-01"))
    assert (decided.stream, decided.data["billing_period"], decided.occurred_at) == (
        stream("cpu", "2026-02-01"), "2026-02-01", "2026-02-10T00:00:00.000000Z")


# --- set_user_usage(s) ---

MARCH = "2026-03-01"
FEBRUARY = "2026-02-01"


def usage_record(period: str = MARCH, usage: str = "0.00", carried: bool = False, policy: str = "none") -> dict:
    """A cpu record of the resource, as the usage view holds it."""
    date = clock.stored(clock.period_start(dt.date.fromisoformat(period))) if carried else f"{period[:8]}05T09:00:00.000000Z"
    return {
        "uuid": events.usage_record_uuid(RESOURCE, "cpu", period), "resource_uuid": RESOURCE, "offering_uuid": OFFERING,
        "provider_uuid": PROVIDER, "project_uuid": PROJECT, "customer_uuid": CLIENT, "type": "cpu",
        "billing_period": period, "plan_period_uuid": PLAN_PERIOD, "usage": usage, "description": "batch",
        "missing_usage_policy": policy, "date": date, "created": date, "modified_by": 1, "carried": int(carried),
    }


def user_stream(username: str, period: str = MARCH) -> str:
    return events.user_usage_stream(events.usage_record_uuid(RESOURCE, "cpu", period), username)


def user_target(record: dict | None = None, records: dict | None = None, billing_type: str = "usage",
                carried_from: dict | None = None, held_usages: dict | None = None) -> UserUsageTarget:
    """The target of items on `record` (default: March's at 0) or on `records`, each stream at version 0."""
    record = record or usage_record()
    records = records if records is not None else {record["billing_period"]: record}
    streams = {stream("cpu", period) for period in records} | {
        user_stream(name, period) for period in records for name in ("alice", "bob")}
    return UserUsageTarget(record, [PLAN], records, dict.fromkeys(streams, 0), billing_type, carried_from or {},
                           held_usages or {})


def share(username: str, usage: str, date: dt.datetime | None = None) -> UserUsageItem:
    return UserUsageItem(username=username, usage=usage, date=date)


def shares(*items: UserUsageItem, bulk: bool = False) -> SetUserUsages:
    return SetUserUsages(record_uuid=events.usage_record_uuid(RESOURCE, "cpu", MARCH), items=list(items), bulk=bulk)


def user_refusal(command: SetUserUsages, state: UserUsageTarget, caller: Caller = OWNER):
    with pytest.raises(UsageRejected) as refused:
        decide_user_usages(command, state, caller, NOW)
    return refused.value.body


def test_user_usages_are_denied_to_a_caller_who_may_not_write_before_their_dates_are_checked():
    with pytest.raises(PermissionDenied):
        decide_user_usages(shares(share("alice", "1", FUTURE)), user_target(), STRANGER, NOW)


def test_a_future_date_is_refused_as_one_body_or_per_item_in_bulk():
    assert user_refusal(shares(share("alice", "1", FUTURE)), user_target()) == {
        "date": ["Cannot submit usage for future dates"]}
    assert user_refusal(shares(share("alice", "1"), share("bob", "1", FUTURE), bulk=True), user_target()) == {
        "usages": [{}, {"date": ["Cannot submit usage for future dates"]}]}


def test_a_provider_may_not_backfill_user_usage_of_a_usage_component():
    state = user_target(records={MARCH: usage_record(), FEBRUARY: usage_record(FEBRUARY)})
    assert user_refusal(shares(share("alice", "1", LAST_MONTH)), state) == {"non_field_errors": [PROVIDER_BACKFILL]}
    assert decide_user_usages(shares(share("alice", "1", LAST_MONTH)), state, STAFF, NOW)
    limit = dataclasses.replace(state, billing_type="limit")
    assert decide_user_usages(shares(share("alice", "1", LAST_MONTH)), limit, OWNER, NOW)


def test_a_date_in_a_month_without_a_record_needs_a_plan_in_force_then():
    long_ago = dt.datetime(2024, 6, 3, tzinfo=UTC)
    state = user_target(records={MARCH: usage_record(), "2024-06-01": None})
    assert user_refusal(shares(share("alice", "1", long_ago)), state, STAFF) == {
        "date": ["Resource must have a plan to report usage"]}


def test_each_changed_user_usage_appends_an_event_on_its_stream():
    decided = decide_user_usages(shares(share("alice", "1.50"), share("bob", "2")), user_target(), OWNER, NOW)
    assert [(e.stream, e.version, e.type, e.occurred_at, e.actor_id) for e in decided] == [
        (user_stream("alice"), 1, "UserUsageReported", "2026-03-10T12:00:00.000000Z", OWNER.id),
        (user_stream("bob"), 1, "UserUsageReported", "2026-03-10T12:00:00.000000Z", OWNER.id),
    ]
    assert decided[0].data == {"component_usage_uuid": usage_record()["uuid"], "username": "alice", "usage": "1.50",
                               "user_uuid": None}


def test_an_unchanged_user_usage_appends_nothing():
    state = user_target(held_usages={(MARCH, "alice"): "1.5"})
    decided = decide_user_usages(shares(share("alice", "1.50"), share("bob", "2")), state, OWNER, NOW)
    assert [e.data["username"] for e in decided] == ["bob"]


def test_bulk_user_usages_give_a_record_at_zero_their_total_each_user_counted_once():
    command = shares(share("alice", "2"), share("bob", "3"), share("alice", "4"), bulk=True)
    decided = decide_user_usages(command, user_target(), OWNER, NOW)
    assert [(e.stream, e.version) for e in decided] == [
        (user_stream("alice"), 1), (user_stream("bob"), 1), (user_stream("alice"), 2), (stream("cpu"), 1)]
    assert decided[-1].data == {
        "resource_uuid": RESOURCE, "type": "cpu", "billing_period": MARCH, "plan_period_uuid": PLAN_PERIOD,
        "amount": "7.00", "description": "batch", "missing_usage_policy": "none",
    }
    assert decided[-1].occurred_at == "2026-03-10T12:00:00.000000Z"


@pytest.mark.parametrize("bulk, usage", [(False, "0.00"), (True, "3.00")])
def test_no_total_is_reported_for_one_user_usage_nor_onto_a_record_with_usage(bulk, usage):
    state = user_target(usage_record(usage=usage))
    decided = decide_user_usages(shares(share("alice", "2"), bulk=bulk), state, OWNER, NOW)
    assert [e.type for e in decided] == ["UserUsageReported"]


def test_a_carried_record_is_reported_as_it_stands_with_the_months_it_derives_from_as_read():
    carried = usage_record(usage="5.00", carried=True, policy="reuse")
    read = {stream("cpu", "2026-01-01"): 2, stream("cpu", FEBRUARY): 1}
    decided = decide_user_usages(shares(share("alice", "2")), user_target(carried, carried_from=read), OWNER, NOW)
    assert [(e.stream, e.type) for e in decided] == [
        (stream("cpu"), "UsageReported"), (user_stream("alice"), "UserUsageReported")]
    assert decided[0].data["amount"] == "5.00" and decided[0].data["missing_usage_policy"] == "reuse"
    assert decided[0].occurred_at == "2026-03-01T00:00:00.000000Z"
    assert decided.read == read


def test_a_bulk_total_on_a_carried_zero_record_keeps_the_months_start_as_its_date():
    carried = usage_record(carried=True, policy="zero")
    decided = decide_user_usages(shares(share("alice", "2"), bulk=True), user_target(carried), OWNER, NOW)
    assert (decided[-1].data["amount"], decided[-1].occurred_at) == ("2.00", "2026-03-01T00:00:00.000000Z")


@pytest.mark.parametrize("bulk, amount", [(False, "0.00"), (True, "4.00")])
def test_a_dated_user_usage_creates_its_months_missing_record(bulk, amount):
    state = user_target(records={MARCH: usage_record(), FEBRUARY: None})
    decided = decide_user_usages(shares(share("alice", "4", LAST_MONTH), bulk=bulk), state, STAFF, NOW)
    assert [(e.stream, e.type) for e in decided] == [
        (stream("cpu", FEBRUARY), "UsageReported"), (user_stream("alice", FEBRUARY), "UserUsageReported")]
    assert decided[0].data == {
        "resource_uuid": RESOURCE, "type": "cpu", "billing_period": FEBRUARY, "plan_period_uuid": PLAN_PERIOD,
        "amount": amount, "description": "", "missing_usage_policy": "none",
    }
    assert decided[0].occurred_at == decided[1].occurred_at == "2026-02-10T00:00:00.000000Z"
