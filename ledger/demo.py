"""The demo: a small realistic catalog and a month of usage, so a newcomer sees real records."""

import datetime as dt
import json
from importlib import resources

from projections import usages

from . import clock, tokens, usage
from .access import Caller
from .database import Ledger

TOKEN_LIFETIME = dt.timedelta(days=7)
DEMO_USAGE = {
    "7a8b9c0d1e2f4d7ec05b6c7d8e9f0a1b": [("cpu_hours", "1250.50", "none"), ("storage", "800.00", "reuse")],
    "9c0d1e2f3a4b4f90e27d8e9f0a1b2c3d": [("cpu_hours", "310.00", "none"), ("gpu_hours", "42.25", "zero")],
}


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
    """Reports this month's demo usage, once: a database that has records is left alone."""
    if usages.count(ledger.conn, None, {}):
        return
    staff = Caller(id=1, username=staff_username(), is_staff=True)
    for resource_uuid, items in DEMO_USAGE.items():
        command = usage.SetUsage(
            items=[usage.UsageItem(type=kind, amount=amount, missing_usage_policy=policy) for kind, amount, policy in items],
            resource_uuid=resource_uuid,
        )
        usage.set_usage(ledger, staff, command)
