"""The component-user-usage view: one row per (usage record, username).

A row holds only what is its own; everything else (placement, component, billing period,
visibility) is read through its parent usage record, so it follows the parent's changes.
"""

import sqlite3

import sqlite_utils

from ledger.events import user_usage_uuid

from . import usages

NAME = "user_usages"
TABLES = ("component_user_usages",)

COLUMNS = {
    "uuid": str, "component_usage_uuid": str, "username": str, "usage": str, "user_uuid": str,
    "created": str, "modified": str,
}


def create(db: sqlite_utils.Database) -> None:
    db["component_user_usages"].create(COLUMNS, pk="uuid", if_not_exists=True)
    db["component_user_usages"].create_index(["component_usage_uuid", "username"], unique=True, if_not_exists=True)
    db["component_user_usages"].create_index(["username"], if_not_exists=True)


def _user_usage_reported(conn, event):
    data = event.data
    # An update changes only the usage: the user link stays as first reported (as in Waldur).
    conn.execute(
        "INSERT INTO component_user_usages (uuid, component_usage_uuid, username, usage, user_uuid, created, modified)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (uuid) DO UPDATE SET usage = excluded.usage, modified = excluded.modified",
        (
            user_usage_uuid(data["component_usage_uuid"], data["username"]), data["component_usage_uuid"],
            data["username"], data["usage"], data["user_uuid"], event.recorded_at, event.recorded_at,
        ),
    )


HANDLERS = {"UserUsageReported": _user_usage_reported}

RECORD_SELECT = (
    "SELECT uu.uuid, uu.user_uuid, uu.username, uu.component_usage_uuid, uu.usage, c.measured_unit,"
    " uu.created, uu.modified, r.name, u.resource_uuid, o.name, u.offering_uuid, p.name, u.project_uuid,"
    " cu.name, u.customer_uuid, u.type, u.date, u.billing_period"
    f" FROM component_user_usages uu JOIN component_usages u ON u.uuid = uu.component_usage_uuid{usages.RECORD_JOINS}"
)
RECORD_KEYS = (
    "uuid", "user_uuid", "username", "component_usage_uuid", "usage", "measured_unit", "created", "modified",
    "resource_name", "resource_uuid", "offering_name", "offering_uuid", "project_name", "project_uuid",
    "customer_name", "customer_uuid", "component_type", "date", "billing_period",
)
ORDER_COLUMNS = {
    "component_usage__billing_period": "u.billing_period",
    "usage": "CAST(uu.usage AS REAL)",
    "username": "uu.username",
}
DEFAULT_ORDER = "u.date DESC, u.type, uu.uuid"


def where(scopes: dict | None, filters: dict) -> tuple[str, list]:
    """Visibility and the parent record's filters, through the parent; then this view's own filters.

    `filters` holds the usage view's filters plus `uuid` (of the user usage record), `username`
    (a case-insensitive substring) and `component_usage_billing_period`.
    """
    own = ("uuid", "username", "component_usage_billing_period")
    clause, params = usages.where(scopes, {name: value for name, value in filters.items() if name not in own})
    clauses = [clause]
    if "uuid" in filters:
        clauses.append("uu.uuid = ?")
        params.append(filters["uuid"])
    if "username" in filters:
        clauses.append("instr(lower(uu.username), lower(?)) > 0")
        params.append(filters["username"])
    if "component_usage_billing_period" in filters:
        clauses.append("u.billing_period = ?")
        params.append(filters["component_usage_billing_period"])
    return " AND ".join(clauses), params


def count(conn: sqlite3.Connection, scopes: dict | None, filters: dict) -> int:
    clause, params = where(scopes, filters)
    return conn.execute(
        "SELECT COUNT(*) FROM component_user_usages uu JOIN component_usages u ON u.uuid = uu.component_usage_uuid"
        f" WHERE {clause}",
        params,
    ).fetchone()[0]


def records(conn: sqlite3.Connection, scopes: dict | None, filters: dict, order: list[str],
            limit: int, offset: int = 0) -> list[dict]:
    clause, params = where(scopes, filters)
    order_terms = usages.order_by(order, ORDER_COLUMNS, DEFAULT_ORDER)
    rows = conn.execute(
        f"{RECORD_SELECT} WHERE {clause} ORDER BY {order_terms} LIMIT ? OFFSET ?", [*params, limit, offset]
    )
    return [dict(zip(RECORD_KEYS, row)) for row in rows]
