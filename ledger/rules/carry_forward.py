"""Carry-forward: which started billing periods get a carried record, and with which value.

A record whose policy is `reuse` or `zero` gives the next started billing period without a report
of its own a carried record (`carried` 1), which gives the next one, and so on: `reuse` keeps its
usage, `zero` gives 0.00. A real report always wins. Nothing is carried into a month that no plan
period of the resource covers, nor into one starting once the resource is terminated; a month that
gets nothing ends the chain. The usage view reads a chain, asks here, and writes what it is told.
"""

import dataclasses
import datetime as dt

from ledger.log.events import usage_record_uuid
from ledger.rules import clock, plans

CARRYING_POLICIES = ("reuse", "zero")


@dataclasses.dataclass(frozen=True)
class Chain:
    """One (resource, component)'s records and what limits the months they may be carried into.

    `records` maps a billing period (ISO date) to its record, reported or carried: a dict with at
    least uuid, resource_uuid, type, usage, missing_usage_policy and carried; every other field is
    carried along as it stands. `terminated_at` is the resource's termination (stored time), if any.
    """

    records: dict[str, dict]
    plan_periods: list[dict]
    terminated_at: str | None = None


@dataclasses.dataclass(frozen=True)
class Carried:
    """The carried record a month should hold (`record`), or None when it should hold none."""

    uuid: str
    record: dict | None


def carried_value(source: dict | None, period: dt.date, starts_at: str) -> dict | None:
    """What a record gives the following billing period without a report: `reuse` keeps its usage, `zero` gives 0.00, `none` nothing."""
    if source is None or source["missing_usage_policy"] not in CARRYING_POLICIES:
        return None
    return {
        **source,
        "uuid": usage_record_uuid(source["resource_uuid"], source["type"], period.isoformat()),
        "billing_period": period.isoformat(),
        "usage": source["usage"] if source["missing_usage_policy"] == "reuse" else "0.00",
        "date": starts_at,
        "created": starts_at,
        "carried": 1,
        "version": 0,  # no report of its own: its stream has no event
    }


def carried_records(chain: Chain, start: dt.date, last: dt.date, zone: str, whole_chain: bool = False) -> list[Carried]:
    """The carried records of the months from `start` through the last started period `last` (months
    in `zone`) that differ from what `chain` holds, in month order: each to write, or to remove.

    The months before `start` are taken as right, and so are those after the first month whose
    record is real or already as wanted, where the walk stops, unless `whole_chain` asks to see
    every month (termination and its reversal change months anywhere in the chain).
    """
    changes = []
    source = chain.records.get(clock.previous_period(start).isoformat())
    period = start
    while period <= last:
        existing = chain.records.get(period.isoformat())
        if existing and not existing["carried"]:
            if not whole_chain:
                return changes
            source = existing
        else:
            starts_at = clock.stored(clock.period_start(period, zone))
            wanted = carried_value(source, period, starts_at) if _may_carry_into(chain, period, zone, starts_at) else None
            if wanted == existing and not whole_chain:
                return changes
            if wanted != existing:
                changes.append(Carried((wanted or existing)["uuid"], wanted))
            source = wanted
        period = clock.next_period(period)
    return changes


def _may_carry_into(chain: Chain, period: dt.date, zone: str, starts_at: str) -> bool:
    """Whether a plan period of the resource covers the month and the resource was not terminated before it starts."""
    planned = plans.covering_plan_period(chain.plan_periods, period, zone) is not None
    return planned and (chain.terminated_at is None or starts_at < chain.terminated_at)
