"""Usage commands: the checks of set_usage and set_user_usage(s) after the field checks, and their events."""

import dataclasses
import datetime as dt
from decimal import Decimal

from ledger.commands import idempotency
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import Decision, NewEvent, StoredEvent
from ledger.rules import clock, plans
from ledger.rules.access import Caller
from projections import catalog, usages, user_usages

WRITABLE_STATES = ("OK", "Updating", "Terminating")
# What a set_usage request need not wait for the views to fold (Ledger.arrive): its decision reads
# usage records only through the stream versions its append checks, and never reads user usages.
SET_USAGE_UNWAITED = frozenset({"UsageReported", "UserUsageReported"})
# Nor need user usages: their decision reads the records of the months its items name, and the
# users' shares, only through the versions of their streams, which the append checks (a record's
# stream among them, even when nothing is appended to it); a record not folded yet is waited for
# before it is found missing (api/user_usages.py).
USER_USAGES_UNWAITED = SET_USAGE_UNWAITED
REPORTABLE_BILLING_TYPES = ("usage", "limit", "one")
# A non-staff provider's date in a past billing period of a `usage`-billed component, by set_usage or user usages.
PROVIDER_BACKFILL = (
    "Service providers can only specify date for limit-based or prepaid billing components"
    " when backfilling past billing periods"
)


class UsageRejected(Exception):
    """A report the ledger refuses; `body` is the DRF-shaped 400 body."""

    def __init__(self, body: dict):
        super().__init__(body)
        self.body = body


class TargetUnreadable(Exception):
    """The plan period or resource that a report names (`fields`) does not exist for the caller."""

    def __init__(self, fields: list[str]):
        super().__init__(fields)
        self.fields = fields


class PermissionDenied(Exception):
    """The caller may not write usage for this resource."""


class RecordNotFound(Exception):
    """The usage record that user usages are reported for does not exist."""


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
    held: dict[str, dict | None] = dataclasses.field(default_factory=dict)  # type -> its record this period


def set_usage(ledger: Ledger, caller: Caller, command: SetUsage, key: idempotency.Key | None = None) -> list[StoredEvent]:
    """Records every item of a report, or none of them."""

    def decide_events() -> list[NewEvent]:
        moment = command.date or clock.now()
        period = clock.billing_period(moment).isoformat()
        types = list(dict.fromkeys(item.type for item in command.items))
        reads = usages.report_reads(ledger.conn, command.plan_period_uuid, command.resource_uuid, period, types, ledger)
        check_readable(command, reads, caller)
        target = target_of(command, reads)
        resource_uuid = target.resource.get("uuid")
        versions = {}
        if resource_uuid:
            # A record is held under its own uuid only (one of another shape would be another's).
            held = {kind: record for kind, record in reads["records"].items()
                    if record["uuid"] == events.usage_record_uuid(resource_uuid, kind, period)}
            target = dataclasses.replace(target, held={kind: held.get(kind) for kind in types})
            # Each stream's version as the view holds it, read with its record: the append checks it.
            versions = {events.usage_stream(resource_uuid, kind, period): (held.get(kind) or {"version": 0})["version"]
                        for kind in types}
        decision = decide(command, target, caller, clock.now(), versions)
        if changes_nothing(decision, reads["logged"]):  # most of a site agent's reports
            return Decision()
        return decision

    return ledger.write(decide_events, key, single_read=True)


def changes_nothing(decision: Decision, logged: dict[str, int]) -> bool:
    """Whether a decision appends nothing, on streams that the log holds at the versions it read
    (`logged`, read with them): it is true as it was read, so its append has nothing to check."""
    return not decision and all(logged.get(stream, 0) == version for stream, version in decision.read.items())


def check_readable(command: SetUsage, reads: dict, caller: Caller) -> None:
    """TargetUnreadable naming the `plan_period` and `resource` fields whose object does not exist or
    is of a resource the caller may not read: such a one is answered as one that does not exist,
    so set_usage tells strangers nothing of it."""
    chosen, named = reads["chosen"], {}  # field -> the uuid of the resource it names
    if command.plan_period_uuid is not None:
        named["plan_period"] = chosen["resource_uuid"] if chosen else None
    if command.resource_uuid is not None:
        named["resource"] = command.resource_uuid
    unreadable = [field for field, uuid in named.items() if not _readable(reads["resources"].get(uuid), caller)]
    if unreadable:
        raise TargetUnreadable(unreadable)


def _readable(resource: dict | None, caller: Caller) -> bool:
    return resource is not None and caller.may_read(
        resource["offering_uuid"], resource["provider_uuid"], resource["project_uuid"], resource["customer_uuid"]
    )


def target_of(command: SetUsage, reads: dict) -> Target:
    chosen = reads["chosen"]
    resource = reads["resources"].get(chosen["resource_uuid"] if chosen else command.resource_uuid)
    if resource is None:
        return Target({}, [], {}, None)
    return Target(resource, reads["plan_periods"], reads["components"], chosen)


def decide(command: SetUsage, target: Target, caller: Caller, now: dt.datetime, versions: dict[str, int]) -> list[NewEvent]:
    """The checks after the fields' own (target, state and plan, components, date, permission, in
    Waldur's order), then one UsageReported event per item that changes what its record holds."""
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
            raise rejected("non_field_errors", PROVIDER_BACKFILL)
    if not provider_side:
        raise PermissionDenied()

    plan_period = chosen or plans.covering_plan_period(target.plan_periods, period)
    if plan_period is None:
        raise rejected("non_field_errors", "Resource must have a plan to report usage")

    decided, versions, unchanged = [], dict(versions), {}
    occurred_at = clock.stored(moment)
    reports = [(item, {
        "resource_uuid": resource["uuid"], "type": item.type, "billing_period": period.isoformat(),
        "plan_period_uuid": plan_period["uuid"], "amount": item.amount,
        "description": item.description, "missing_usage_policy": item.missing_usage_policy,
    }) for item in command.items]
    # A type is left out only when every item of it says what its record holds: items of one type apply in order.
    changed = {item.type for item, data in reports if not report_unchanged(data, target.held.get(item.type))}
    for item, data in reports:
        stream = events.usage_stream(resource["uuid"], item.type, period.isoformat())
        if item.type not in changed:
            # Left out as the record stood when read: if it has moved since, this is decided again.
            unchanged[stream] = versions[stream]
            continue
        versions[stream] += 1
        decided.append(events.new(stream, versions[stream], "UsageReported", data, occurred_at, caller.id))
    return Decision(decided, read=unchanged)


def report_unchanged(data: dict, record: dict | None) -> bool:
    """Whether a report says what its record already holds as a report of its own (a carried value
    is not held: it follows the month before); agents re-send the same figures every cycle."""
    return bool(record) and not record["carried"] and (
        Decimal(data["amount"]) == Decimal(record["usage"])
        and (data["description"], data["missing_usage_policy"], data["plan_period_uuid"])
        == (record["description"], record["missing_usage_policy"], record["plan_period_uuid"])
    )


def user_usage_unchanged(usage: str, held: str | None) -> bool:
    """Whether a user's usage is what their user usage record already holds."""
    return held is not None and Decimal(usage) == Decimal(held)


@dataclasses.dataclass(frozen=True)
class UserUsageItem:
    """One user's usage of a usage record, whose fields have passed their checks."""

    username: str
    usage: str = "0.00"
    user_uuid: str | None = None
    date: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class SetUserUsages:
    """`set_user_usage` (one item) or, with `bulk`, `set_user_usages`: user usages of one usage record."""

    record_uuid: str
    items: list[UserUsageItem]
    bulk: bool = False


@dataclasses.dataclass(frozen=True)
class UserUsageTarget:
    """What the decision needs to know about the record and the periods that the items' dates name."""

    record: dict
    plan_periods: list[dict]
    records: dict[str, dict | None]  # billing period -> that period's record of the same resource and component
    versions: dict[str, int]
    billing_type: str | None  # of the record's component
    carried_from: dict[str, int]  # versions of the streams of the months the carried records among `records` derive from
    held: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)  # (period, username) -> usage
    logged: dict[str, int] | None = None  # the versions of `versions` in the log, where read with them


def set_user_usages(
    ledger: Ledger, caller: Caller, command: SetUserUsages, key: idempotency.Key | None = None
) -> list[StoredEvent]:
    """Records every user usage of a request, or none of them."""

    def decide_events() -> list[NewEvent]:
        target = user_usage_target(ledger, command)
        decision = decide_user_usages(command, target, caller, clock.now())
        if target.logged is not None and changes_nothing(decision, target.logged):
            return Decision()  # as for set_usage
        return decision

    return ledger.write(decide_events, key, single_read=True)


def user_usage_target(ledger: Ledger, command: SetUserUsages) -> UserUsageTarget:
    """What the decision reads: in one statement where every item is of the record's own month
    and the record is not carried (the site agent's reports); otherwise piece by piece, in one
    snapshot (`load_user_usage_target`)."""
    reads = user_usages.report_reads(ledger.conn, command.record_uuid, [item.username for item in command.items])
    if reads is None:
        raise RecordNotFound()
    record = reads["record"]
    period = record["billing_period"]
    if record["carried"] or any(item_period(record, item) != period for item in command.items):
        return ledger.read_for_decision(lambda: load_user_usage_target(ledger, command))
    streams = [events.usage_stream(record["resource_uuid"], record["type"], period),
               *(events.user_usage_stream(record["uuid"], item.username) for item in command.items)]
    return UserUsageTarget(
        record, reads["plan_periods"], {period: record}, {**dict.fromkeys(streams, 0), **reads["versions"]},
        reads["billing_type"], {}, {(period, username): usage for username, usage in reads["held"].items()},
        reads["logged"],
    )


def load_user_usage_target(ledger: Ledger, command: SetUserUsages) -> UserUsageTarget:
    """As `user_usage_target`, for any items and record, in several statements: call it in a snapshot
    of the views (Ledger.read_for_decision), where carried values and the versions they derive
    from are read as of one moment."""
    conn = ledger.conn
    record = usages.stored_record(conn, command.record_uuid)
    if record is None:
        raise RecordNotFound()
    resource_uuid, component_type = record["resource_uuid"], record["type"]
    periods = {item_period(record, item) for item in command.items}
    # An item without a date is of the record's own month (the usual case): that record is read already.
    uuids = {period: events.usage_record_uuid(resource_uuid, component_type, period) for period in periods}
    records = {period: record if uuid == record["uuid"] else usages.stored_record(conn, uuid)
               for period, uuid in uuids.items()}
    streams = {events.usage_stream(resource_uuid, component_type, period) for period in periods} | {
        events.user_usage_stream(uuids[item_period(record, item)], item.username) for item in command.items
    }
    shares = {events.user_usage_uuid(uuids[period], username): (period, username)
              for period, username in {(item_period(record, item), item.username) for item in command.items}}
    held = {shares[uuid]: usage for uuid, usage in user_usages.held_usages(conn, list(shares)).items()}
    sources = [stream for period, existing in records.items() if existing and existing["carried"]
               for stream in source_streams(conn, resource_uuid, component_type, period)]
    return UserUsageTarget(
        record, catalog.plan_periods(conn, resource_uuid), records, ledger.store.stream_versions(streams),
        catalog.billing_types(conn, record["offering_uuid"]).get(component_type), ledger.store.stream_versions(sources),
        held,
    )


def source_streams(conn, resource_uuid: str, component_type: str, period: str) -> list[str]:
    """The streams a carried record's value derives from: the reported month it was carried from and the carried months after it."""
    month = dt.date.fromisoformat(usages.carried_from(conn, resource_uuid, component_type, period))
    streams = []
    while month.isoformat() < period:
        streams.append(events.usage_stream(resource_uuid, component_type, month.isoformat()))
        month = clock.next_period(month)
    return streams


def item_period(record: dict, item: UserUsageItem) -> str:
    """The billing period whose record an item belongs to: its date's, else the record's own."""
    return clock.billing_period(item.date).isoformat() if item.date else record["billing_period"]


def decide_user_usages(command: SetUserUsages, target: UserUsageTarget, caller: Caller, now: dt.datetime) -> list[NewEvent]:
    """Permission, each item's date, then the events of the items that change what their records hold.

    A date in another billing period needs that period's record, which is created (at usage 0)
    when missing. For `set_user_usages`, a record at usage 0 takes the total of the submitted
    usages (a username submitted twice counts once, with its last usage). A carried record is
    reported as it stands, keeping its date (its period's start): carried records come and go with
    the months before them, and a record's user usages must not go with it. The decision names the
    streams of those months, so that a correction of one appended meanwhile makes it decide again.
    """
    record = target.record
    if not caller.may_write(record["offering_uuid"], record["provider_uuid"]):
        raise PermissionDenied()
    errors = [user_usage_errors(item, target, caller, now) for item in command.items]
    if any(errors):
        raise UsageRejected({"usages": errors} if command.bulk else errors[0])

    resource_uuid, component_type = record["resource_uuid"], record["type"]
    versions = dict(target.versions)

    def next_event(stream: str, event_type: str, data: dict, occurred_at: str) -> NewEvent:
        versions[stream] += 1
        return events.new(stream, versions[stream], event_type, data, occurred_at, caller.id)

    def usage_reported(period: str, plan_period_uuid: str, amount: Decimal, description: str, policy: str, occurred_at: str):
        data = {
            "resource_uuid": resource_uuid, "type": component_type, "billing_period": period,
            "plan_period_uuid": plan_period_uuid, "amount": f"{amount:.2f}", "description": description,
            "missing_usage_policy": policy,
        }
        return next_event(events.usage_stream(resource_uuid, component_type, period), "UsageReported", data, occurred_at)

    usage_by_period: dict[str, dict[str, Decimal]] = {}
    latest_by_period: dict[str, str] = {}
    reported = []
    # A user is left out only when every item of theirs says what their record holds, as for set_usage.
    changed = {(item_period(record, item), item.username) for item in command.items
               if not user_usage_unchanged(item.usage, target.held.get((item_period(record, item), item.username)))}
    read = dict(target.carried_from)
    for item in command.items:
        period = item_period(record, item)
        occurred_at = clock.stored(item.date or now)
        usage_by_period.setdefault(period, {})[item.username] = Decimal(item.usage)
        latest_by_period[period] = occurred_at
        record_uuid = events.usage_record_uuid(resource_uuid, component_type, period)
        stream = events.user_usage_stream(record_uuid, item.username)
        if (period, item.username) not in changed:
            read[stream] = target.versions[stream]  # as it stood when read, as for set_usage
            continue
        data = {"component_usage_uuid": record_uuid, "username": item.username, "usage": item.usage,
                "user_uuid": item.user_uuid}
        reported.append(next_event(stream, "UserUsageReported", data, occurred_at))

    created, totals = [], []
    for period, by_user in usage_by_period.items():
        total = sum(by_user.values(), Decimal(0)) if command.bulk else Decimal(0)
        existing = target.records[period]
        if existing is None:
            plan_period = plans.covering_plan_period(target.plan_periods, dt.date.fromisoformat(period))
            created.append(usage_reported(period, plan_period["uuid"], total, "", "none", latest_by_period[period]))
        elif command.bulk and Decimal(existing["usage"]) == 0 and total != 0:
            totals.append(usage_reported(
                period, existing["plan_period_uuid"], total, existing["description"],
                existing["missing_usage_policy"], existing["date"] if existing["carried"] else latest_by_period[period],
            ))
        elif existing["carried"]:
            created.append(usage_reported(
                period, existing["plan_period_uuid"], Decimal(existing["usage"]), existing["description"],
                existing["missing_usage_policy"], existing["date"],
            ))
    decided = created + reported + totals
    appended = {event.stream for event in decided}
    for period in target.records:  # as each record stood when read: if it has moved since, this is decided again
        stream = events.usage_stream(resource_uuid, component_type, period)
        if stream not in appended:
            read[stream] = target.versions[stream]
    return Decision(decided, read=read)


def user_usage_errors(item: UserUsageItem, target: UserUsageTarget, caller: Caller, now: dt.datetime) -> dict:
    """The DRF-shaped errors of one item's date; empty when it has none. A date obeys set_usage's
    backfill rule in the period it lands in."""
    if item.date is None:
        return {}
    if item.date > now:
        return {"date": ["Cannot submit usage for future dates"]}
    period = item_period(target.record, item)
    past = period < clock.billing_period(now).isoformat()
    if past and target.billing_type == "usage" and not caller.is_staff:
        return {"non_field_errors": [PROVIDER_BACKFILL]}
    if target.records[period] is None and not plans.covering_plan_period(
        target.plan_periods, dt.date.fromisoformat(period)
    ):
        return {"date": ["Resource must have a plan to report usage"]}
    return {}
