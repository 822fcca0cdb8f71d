"""Time for the ledger: now, billing periods, and the wire format of datetimes."""

import datetime as dt
import functools
import os
from zoneinfo import ZoneInfo

UTC = dt.timezone.utc


def now() -> dt.datetime:
    """The current time in UTC; `LEDGER_NOW` fixes it for tests and demonstrations."""
    fixed = os.environ.get("LEDGER_NOW")
    if fixed:
        return parse_datetime(fixed)
    return dt.datetime.now(UTC)


def timezone_name() -> str:
    return os.environ.get("LEDGER_TIMEZONE", "UTC")


def timezone() -> ZoneInfo:
    return ZoneInfo(timezone_name())


def parse_datetime(text: str) -> dt.datetime:
    """An ISO 8601 datetime; a naive one is taken as UTC. Raises ValueError."""
    value = dt.datetime.fromisoformat(text.strip().replace("z", "Z"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59-01:00, past the last representable UTC instant
        raise ValueError(f"{text!r} is out of range") from None


class PeriodOutOfRange(ValueError):
    """A moment whose billing period does not start and end within the instants a datetime can hold."""


def billing_period(moment: dt.datetime) -> dt.date:
    """The first day of the calendar month of `moment` in the ledger's time zone; PeriodOutOfRange
    for the first or last month of the calendar when the zone moves its start or end out of range."""
    zone = timezone_name()
    try:
        period = moment.astimezone(ZoneInfo(zone)).date().replace(day=1)
    except (OverflowError, ValueError):
        period = None
    if period is None or not _representable(period, zone):
        raise PeriodOutOfRange(f"the billing period of {moment} cannot be represented in {zone}")
    return period


@functools.lru_cache(maxsize=256)
def _representable(period: dt.date, zone: str) -> bool:
    """Whether a billing period's start and end are instants a datetime can hold (remembered: every report asks)."""
    try:
        period_start(period, zone)
        period_start(next_period(period), zone)
    except (OverflowError, ValueError):
        return False
    return True


def period_start(period: dt.date, zone: str | None = None) -> dt.datetime:
    """The instant (UTC) at which a billing period starts in `zone` (default: the ledger's time zone)."""
    local = dt.datetime(period.year, period.month, 1, tzinfo=ZoneInfo(zone) if zone else timezone())
    return local.astimezone(UTC)


def next_period(period: dt.date) -> dt.date:
    return dt.date(period.year + period.month // 12, period.month % 12 + 1, 1)


def previous_period(period: dt.date) -> dt.date:
    return dt.date(period.year - (period.month == 1), (period.month - 2) % 12 + 1, 1)


def stored(moment: dt.datetime) -> str:
    """Fixed-width UTC text (a four-digit year too), so that string order is time order in the database."""
    utc = moment.astimezone(UTC)
    return f"{utc.replace(tzinfo=None).isoformat(timespec='microseconds')}Z"


def padded(stored_text: str) -> str:
    """Stored text with a four-digit year: earlier versions stored years before 1000 with fewer digits."""
    if stored_text.find("-") == 4:
        return stored_text
    year, _, rest = stored_text.partition("-")
    return f"{year.zfill(4)}-{rest}"


def wire(stored_text: str) -> str:
    """Stored text as the API shows it: a four-digit year, `Z`, microseconds only when non-zero."""
    if stored_text.find("-") != 4:  # as padded(): a page of records asks twenty times
        stored_text = padded(stored_text)
    if stored_text.endswith(".000000Z"):
        return stored_text[:-8] + "Z"
    return stored_text


def parse_month(text: str) -> dt.date:
    """A billing period written `YYYY-MM` (e.g. 2026-03), as its first day. Raises ValueError."""
    if len(text) != 7:  # strptime takes "2026-3" too; a month is always written with two digits
        raise ValueError(f"{text!r} is not a month as YYYY-MM")
    return dt.datetime.strptime(text, "%Y-%m").date()
