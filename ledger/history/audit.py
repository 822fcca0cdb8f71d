"""Audit: who changed a resource's usage records, when, and what each change replaced; and the
events behind one record, for the API's history of a record."""

import dataclasses
import functools

from ledger.backends import Connection
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import StoredEvent
from ledger.log.store import EventStore
from projections import catalog, usages


@dataclasses.dataclass(frozen=True)
class AuditEntry:
    """One change of a usage record: a report, a value carried into a period without one, or a
    report of one user's share of the record (`user` names that user)."""

    billing_period: str
    type: str
    seq: int | None  # None for a carried value: it has no event of its own
    occurred_at: str  # business time: the report's date, or the start of the carried period
    recorded_at: str | None
    actor_id: int | None
    username: str | None
    old: str | None  # the record's value before this report; None for its first
    new: str
    missing_usage_policy: str
    description: str
    carried: bool = False
    user: str | None = None


def audit(ledger: Ledger, resource_uuid: str, component_type: str | None = None,
          period: str | None = None) -> list[AuditEntry]:
    """Every report of a resource's usage records (optionally one component type and one month,
    `YYYY-MM`) with who made it and what it replaced, the values carried into months without one,
    and the reports of users' shares of those records, by period, type and seq."""
    conn = ledger.conn

    @functools.cache
    def username(user_id: int | None) -> str | None:
        return None if user_id is None else catalog.username(conn, user_id)

    def wanted(kind: str, billing_period: str) -> bool:
        return component_type in (None, kind) and period in (None, billing_period[:7])

    entries, previous = [], {}
    for event in ledger.store.read_streams(events.usage_streams_prefix(resource_uuid)):
        if event.type != "UsageReported":
            continue
        data = events.upgrade(event).data
        if wanted(data["type"], data["billing_period"]):
            entries.append(AuditEntry(
                data["billing_period"], data["type"], event.seq, event.occurred_at, event.recorded_at,
                event.actor_id, username(event.actor_id), previous.get(event.stream), data["amount"],
                data["missing_usage_policy"], data["description"],
            ))
        previous[event.stream] = data["amount"]
    for record in usages.records(conn, None, {"resource_uuid": resource_uuid}, [], usages.EVERY):
        if not wanted(record["type"], record["billing_period"]):
            continue
        if is_carried(conn, record):
            entries.append(AuditEntry(
                record["billing_period"], record["type"], None, record["date"], None, record["modified_by"],
                username(record["modified_by"]), None, record["usage"], record["missing_usage_policy"],
                record["description"], carried=True,
            ))
        shares: dict[str, str] = {}
        for event in ledger.store.read_streams(events.user_usage_streams_prefix(record["uuid"])):
            data = events.upgrade(event).data
            entries.append(AuditEntry(
                record["billing_period"], record["type"], event.seq, event.occurred_at, event.recorded_at,
                event.actor_id, username(event.actor_id), shares.get(data["username"]), data["usage"], "", "",
                user=data["username"],
            ))
            shares[data["username"]] = data["usage"]
    # A record is either reported or carried, never both: within one, order is that of the log.
    return sorted(entries, key=lambda e: (e.billing_period, e.type, e.seq or 0))


def is_carried(conn: Connection, record: dict) -> bool:
    """Whether a usage record's value was carried into its month rather than reported there."""
    return bool(usages.stored_record(conn, record["uuid"])["carried"])


def record_events(store: EventStore, record: dict) -> list[StoredEvent]:
    """The events behind a usage record, oldest first: its reports, or, for a carried record (which
    has none of its own), the reports of the record its value was carried from."""
    resource_uuid, component_type = record["resource_uuid"], record["type"]
    own = list(store.read_stream(events.usage_stream(resource_uuid, component_type, record["billing_period"])))
    source = None if own else usages.carried_from(store.conn, resource_uuid, component_type, record["billing_period"])
    return own if source is None else list(store.read_stream(events.usage_stream(resource_uuid, component_type, source)))
