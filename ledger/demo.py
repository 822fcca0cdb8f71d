"""The demo: a small realistic catalog and half a year of usage, so a newcomer sees real records.

The history covers the five months before this one and this month: three consumer customers,
values carried into months without a report (`reuse` and `zero`), a late correction of an
earlier month, and users' shares of a record.
"""

import datetime as dt
import json
from importlib import resources

from ledger.commands import tokens, usage
from ledger.database import Ledger
from ledger.log.events import usage_record_uuid
from ledger.rules import clock
from ledger.rules.access import Caller
from projections import usages

TOKEN_LIFETIME = dt.timedelta(days=7)
OCEAN = "7a8b9c0d1e2f4d7ec05b6c7d8e9f0a1b"  # ocean-alloc-01, Climate Institute
SEQUENCING = "9c0d1e2f3a4b4f90e27d8e9f0a1b2c3d"  # seq-alloc-01, Genomics Lab
ICE = "d3e4f5a6b7c84d9eaf0a1b2c3d4e5f60"  # ice-alloc-01, Arctic Observatory

# (months before this one, resource, component type, amount, missing_usage_policy), in the order reported.
HISTORY = (
    (5, OCEAN, "cpu_hours", "980.00", "none"), (5, OCEAN, "storage", "500.00", "reuse"),
    (5, SEQUENCING, "cpu_hours", "220.50", "none"),
    (4, OCEAN, "cpu_hours", "1040.25", "none"), (4, SEQUENCING, "cpu_hours", "265.00", "none"),
    (4, SEQUENCING, "gpu_hours", "38.00", "zero"),
    (3, OCEAN, "cpu_hours", "1105.75", "none"), (3, SEQUENCING, "cpu_hours", "240.00", "none"),
    (3, ICE, "cpu_hours", "150.00", "none"), (3, ICE, "storage", "250.00", "reuse"),
    (2, OCEAN, "cpu_hours", "1180.00", "none"), (2, OCEAN, "storage", "800.00", "reuse"),
    (2, SEQUENCING, "cpu_hours", "305.00", "none"), (2, ICE, "cpu_hours", "185.50", "none"),
    (1, OCEAN, "cpu_hours", "1210.00", "none"), (1, SEQUENCING, "cpu_hours", "298.75", "none"),
    (1, ICE, "cpu_hours", "201.25", "none"),
    (0, OCEAN, "cpu_hours", "1250.50", "none"), (0, OCEAN, "storage", "800.00", "reuse"),
    (0, SEQUENCING, "cpu_hours", "310.00", "none"), (0, SEQUENCING, "gpu_hours", "42.25", "zero"),
    (0, ICE, "cpu_hours", "96.00", "none"),
)
# Reported after everything above: a provider corrects an earlier month.
LATE_CORRECTIONS = ((2, SEQUENCING, "cpu_hours", "287.40", "none"),)
# (months before this one, resource, component type, {username: usage}): users' shares of a record.
USER_SHARES = ((1, OCEAN, "cpu_hours", {"alice": "726.00", "bob": "484.00"}),
               (0, OCEAN, "cpu_hours", {"alice": "650.50"}))


def catalog_text() -> str:
    return resources.files("ledger").joinpath("demo_catalog.json").read_text()


def staff_username() -> str:
    return next(user["username"] for user in json.loads(catalog_text())["users"] if user.get("is_staff"))


def staff_token(ledger: Ledger) -> str:
    """A staff token for this run: the previous runs' tokens are revoked, and this one expires in a week."""
    staff = staff_username()
    tokens.revoke_tokens(ledger, staff)
    return tokens.issue_token(ledger, staff, clock.now() + TOKEN_LIFETIME)[1]


def seed_usage(ledger: Ledger) -> None:
    """Reports the demo's usage history, once: a database that has records is left alone."""
    if usages.count(ledger.conn, None, {}):
        return
    staff = Caller(id=1, username=staff_username(), is_staff=True)
    this_month = clock.billing_period(clock.now())
    for months_back, resource_uuid, kind, amount, policy in HISTORY + LATE_CORRECTIONS:
        command = usage.SetUsage(
            items=[usage.UsageItem(type=kind, amount=amount, missing_usage_policy=policy)],
            resource_uuid=resource_uuid, date=report_date(this_month, months_back),
        )
        usage.set_usage(ledger, staff, command)
    for months_back, resource_uuid, kind, shares in USER_SHARES:
        period = months_before(this_month, months_back)
        items = [usage.UserUsageItem(username, amount) for username, amount in shares.items()]
        record = usage_record_uuid(resource_uuid, kind, period.isoformat())
        usage.set_user_usages(ledger, staff, usage.SetUserUsages(record, items, bulk=True))


def months_before(period: dt.date, count: int) -> dt.date:
    for _ in range(count):
        period = clock.previous_period(period)
    return period


def report_date(this_month: dt.date, months_back: int) -> dt.datetime | None:
    """When a past month's usage is dated (its 20th, as a provider would report it); None (now) for this month."""
    if not months_back:
        return None
    return clock.period_start(months_before(this_month, months_back)) + dt.timedelta(days=19, hours=9)
