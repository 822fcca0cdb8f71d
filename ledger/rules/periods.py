"""Month rollover: one BillingPeriodStarted event per billing month, appended once however many roll."""

import datetime as dt

from ledger.log import events
from ledger.log.records import NewEvent
from ledger.log.store import EventStore
from ledger.rules import clock


def period_stream(period: dt.date) -> str:
    return f"period/{period.isoformat()[:7]}"


def started_through(store: EventStore) -> dt.date | None:
    """The latest billing period the log has started, or None before the first rollover."""
    last = store.last_of_greatest_stream("period/")
    return dt.date.fromisoformat(last.data["billing_period"]) if last else None


def start_of_month_after(period: dt.date) -> dt.datetime:
    """The instant the billing month after `period` begins; the end of time after the calendar's last month."""
    try:
        return clock.period_start(clock.next_period(period))
    except (OverflowError, ValueError):
        return dt.datetime.max.replace(tzinfo=clock.UTC)


def due(last_started: dt.date | None, now: dt.datetime) -> list[NewEvent]:
    """The rollover events from the month after `last_started` through the current one.

    Before the first rollover only the current month starts: nothing is carried into
    months the ledger never saw begin, except by backfilled reports themselves.
    """
    current = clock.billing_period(now)
    period = clock.next_period(last_started) if last_started else current
    decided = []
    while period <= current:
        data = {
            "billing_period": period.isoformat(),
            "starts_at": clock.stored(clock.period_start(period)),
            "timezone": clock.timezone_name(),
        }
        decided.append(events.new(period_stream(period), 1, "BillingPeriodStarted", data, data["starts_at"]))
        period = clock.next_period(period)
    return decided
