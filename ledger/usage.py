"""Usage commands: the checks of SPEC §4 after the field checks, and the events they decide on."""

import dataclasses
import datetime as dt

from . import clock, events
from projections import catalog

from .access import Caller
from .database import Ledger
from .store import NewEvent, StoredEvent

WRITABLE_STATES = ("OK", "Updating", "Terminating")
REPORTABLE_BILLING_TYPES = ("usage", "limit", "one")


class UsageRejected(Exception):
    """A report the ledger refuses; `body` is the DRF-shaped 400 body."""

    def __init__(self, body: dict):
        super().__init__(body)
        self.body = body


class PermissionDenied(Exception):
    """The caller may not write usage for this resource."""


def rejected(field: str, message: str) -> UsageRejected:
    return UsageRejected({field: [message]})


@dataclasses.dataclass(frozen=True)
class UsageItem:
    type: str
    amount: str
    description: str = ""
    missing_usage_policy: str = "none"


@dataclasses.dataclass(frozen=True)
class SetUsage:
    """A `set_usage` request whose fields have passed their checks."""

    items: list[UsageItem]
    resource_uuid: str | None = None
    plan_period_uuid: str | None = None
    date: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Target:
    """What the checks need to know about the resource a report is for."""

    resource: dict
    plan_periods: list[dict]
    components: dict[str, str]  # type -> billing type
    chosen_plan_period: dict | None


def set_usage(ledger: Ledger, caller: Caller, command: SetUsage) -> list[StoredEvent]:
    """Records every item of a report, or none of them."""

    def decide_events() -> list[NewEvent]:
        target = load_target(ledger, command)
        moment = command.date or clock.now()
        period = clock.billing_period(moment).isoformat()
        resource_uuid = target.resource.get("uuid")
        streams = {events.usage_stream(resource_uuid, item.type, period) for item in command.items} if resource_uuid else ()
        versions = {stream: ledger.store.stream_version(stream) for stream in streams}
        return decide(command, target, caller, clock.now(), versions)

    return ledger.write(decide_events)


def load_target(ledger: Ledger, command: SetUsage) -> Target:
    conn = ledger.conn
    chosen = catalog.plan_period(conn, command.plan_period_uuid) if command.plan_period_uuid else None
    resource_uuid = chosen["resource_uuid"] if chosen else command.resource_uuid
    resource = catalog.resource(conn, resource_uuid) if resource_uuid else None
    if resource is None:
        return Target({}, [], {}, None)
    return Target(
        resource, catalog.plan_periods(conn, resource_uuid), catalog.billing_types(conn, resource["offering_uuid"]), chosen
    )


def decide(command: SetUsage, target: Target, caller: Caller, now: dt.datetime, versions: dict[str, int]) -> list[NewEvent]:
    """The checks of SPEC §4 steps 2 to 6, then one UsageReported event per item."""
    if not target.resource:
        raise rejected("non_field_errors", "Either plan_period or resource should be provided.")
    current_period = clock.billing_period(now)
    chosen = target.chosen_plan_period
    if chosen and chosen["end"] and chosen["end"] < clock.stored(clock.period_start(current_period)):
        raise rejected("plan_period", "Billing period is closed.")

    resource = target.resource
    if resource["state"] not in WRITABLE_STATES:
        raise rejected("resource", "Resource is not in valid state.")
    if not target.plan_periods:
        raise rejected("non_field_errors", "Resource must have a plan to report usage")

    invalid = sorted({
        item.type for item in command.items
        if target.components.get(item.type) not in REPORTABLE_BILLING_TYPES
    })
    if invalid:
        raise rejected("non_field_errors", f"These components are invalid: {', '.join(invalid)}.")

    provider_side = caller.may_write(resource["offering_uuid"], resource["provider_uuid"])
    moment = command.date or now
    period = clock.billing_period(moment)
    if command.date is not None:
        if command.date > now:
            raise rejected("date", "Cannot submit usage for future dates")
        if not provider_side:
            raise rejected("non_field_errors", "Only staff users and service providers can specify date for backfilling")
        usage_billed = any(target.components[item.type] == "usage" for item in command.items)
        if not caller.is_staff and period < current_period and usage_billed:
            raise rejected(
                "non_field_errors",
                "Service providers can only specify date for limit-based or prepaid billing components"
                " when backfilling past billing periods",
            )
    if not provider_side:
        raise PermissionDenied()

    plan_period = chosen or covering_plan_period(target.plan_periods, period)
    if plan_period is None:
        raise rejected("non_field_errors", "Resource must have a plan to report usage")

    decided, versions = [], dict(versions)
    occurred_at = clock.stored(moment)
    for item in command.items:
        stream = events.usage_stream(resource["uuid"], item.type, period.isoformat())
        versions[stream] += 1
        data = {
            "resource_uuid": resource["uuid"], "type": item.type, "billing_period": period.isoformat(),
            "plan_period_uuid": plan_period["uuid"], "amount": item.amount,
            "description": item.description, "missing_usage_policy": item.missing_usage_policy,
        }
        decided.append(events.new(stream, versions[stream], "UsageReported", data, occurred_at, caller.id))
    return decided


def covering_plan_period(plan_periods: list[dict], period: dt.date) -> dict | None:
    """The plan period in force during a billing period; the latest start wins."""
    start = clock.stored(clock.period_start(period))
    end = clock.stored(clock.period_start(clock.next_period(period)))
    covering = [p for p in plan_periods if p["start"] < end and (p["end"] is None or p["end"] > start)]
    return max(covering, key=lambda p: p["start"], default=None)
