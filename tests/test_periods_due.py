"""Month rollover decided on plain state: the latest started month and the time in, BillingPeriodStarted events out."""

import datetime as dt

from ledger.rules.periods import due

UTC = dt.timezone.utc
MARCH_10 = dt.datetime(2026, 3, 10, 12, tzinfo=UTC)


def started(decided) -> list[tuple]:
    return [(e.stream, e.version, e.type, e.data["billing_period"], e.data["starts_at"], e.occurred_at) for e in decided]


def test_before_the_first_rollover_only_the_current_month_starts():
    assert started(due(None, MARCH_10)) == [
        ("period/2026-03", 1, "BillingPeriodStarted", "2026-03-01", "2026-03-01T00:00:00.000000Z",
         "2026-03-01T00:00:00.000000Z"),
    ]


def test_every_month_after_the_last_started_one_through_the_current_one_starts_once():
    assert [e.stream for e in due(dt.date(2025, 11, 1), MARCH_10)] == [
        "period/2025-12", "period/2026-01", "period/2026-02", "period/2026-03"]
    assert {e.version for e in due(dt.date(2025, 11, 1), MARCH_10)} == {1}


def test_nothing_is_due_once_the_current_month_has_started():
    assert due(dt.date(2026, 3, 1), MARCH_10) == []


def test_months_start_in_the_ledgers_time_zone(monkeypatch):
    monkeypatch.setenv("LEDGER_TIMEZONE", "Europe/Helsinki")
    (decided,) = due(dt.date(2026, 2, 1), dt.datetime(2026, 2, 28, 23, tzinfo=UTC))
    assert decided.data == {"billing_period": "2026-03-01", "starts_at": "2026-02-28T22:00:00.000000Z",
                            "timezone": "Europe/Helsinki"}
    assert due(dt.date(2026, 2, 1), dt.datetime(2026, 2, 28, 21, tzinfo=UTC)) == []
