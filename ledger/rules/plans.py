"""Plan periods: which of a resource's plan periods is in force during a billing period."""

import datetime as dt

from ledger.rules import clock


def covering_plan_period(plan_periods: list[dict], period: dt.date, zone: str | None = None) -> dict | None:
    """The plan period in force during a billing period (months in `zone`, by default the ledger's);
    the latest start wins."""
    start = clock.stored(clock.period_start(period, zone))
    end = clock.stored(clock.period_start(clock.next_period(period), zone))
    covering = [p for p in plan_periods if p["start"] < end and (p["end"] is None or p["end"] > start)]
    return max(covering, key=lambda p: p["start"], default=None)
