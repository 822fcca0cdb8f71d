"""Totals of usage for people: a billing period's usage per customer, project, offering or
resource, and a month-by-month series for a chart. Carried records count like reported ones.

Usage is summed exactly, as decimals; the records' text values are never added as floats.
"""

import datetime as dt
import sqlite3
from collections.abc import Iterable
from decimal import Decimal

from . import usages

# What a report can be grouped by: the record's column naming the group, and the group's name.
GROUPS = {
    "customer": ("u.customer_uuid", "cu.name"),
    "project": ("u.project_uuid", "p.name"),
    "offering": ("u.offering_uuid", "o.name"),
    "resource": ("u.resource_uuid", "r.name"),
}


def period_totals(conn: sqlite3.Connection, scopes: dict | None, period: dt.date, by: str,
                  filters: dict | None = None) -> list[dict]:
    """One row per group and component type (and unit): the period's total usage and how many
    records it adds up, among the records matching `filters` (as for a usage list) that `scopes`
    may read; by group name, then type."""
    uuid_column, name_column = GROUPS[by]
    clause, params = usages.where(scopes, {**(filters or {}), "billing_period": period.isoformat()})
    rows = conn.execute(
        f"SELECT {uuid_column}, {name_column}, u.type, COALESCE(c.measured_unit, ''), u.usage"
        f" FROM component_usages u{usages.RECORD_JOINS} WHERE {clause}",
        params,
    )
    summed = sorted(_sums(rows).items(), key=lambda item: (item[0][1], item[0][0], item[0][2], item[0][3]))
    return [
        {"period": f"{period:%Y-%m}", f"{by}_uuid": group, f"{by}_name": name, "type": kind,
         "measured_unit": unit, "usage": f"{total:.2f}", "records": records}
        for (group, name, kind, unit), (total, records) in summed
    ]


def monthly_totals(conn: sqlite3.Connection, scopes: dict | None, filters: dict,
                   first: dt.date, last: dt.date) -> list[dict]:
    """The usage per billing period from `first` through `last` and component type, of the records
    matching `filters` (as for a usage list) that `scopes` may read; by type, then period."""
    clause, params = usages.where(scopes, filters)
    rows = conn.execute(
        f"SELECT u.type, COALESCE(c.name, u.type), COALESCE(c.measured_unit, ''), u.billing_period, u.usage"
        f" FROM component_usages u{usages.RECORD_JOINS}"
        f" WHERE {clause} AND u.billing_period BETWEEN ? AND ?",
        [*params, first.isoformat(), last.isoformat()],
    )
    return [
        {"type": kind, "name": name, "measured_unit": unit, "billing_period": period,
         "usage": f"{total:.2f}", "records": records}
        for (kind, name, unit, period), (total, records) in sorted(_sums(rows).items())
    ]


def _sums(rows: Iterable[tuple]) -> dict[tuple, tuple[Decimal, int]]:
    """Rows of (*key, usage) summed per key: the total and how many rows."""
    sums: dict[tuple, tuple[Decimal, int]] = {}
    for *key, usage in rows:
        total, records = sums.get(tuple(key), (Decimal(0), 0))
        sums[tuple(key)] = (total + Decimal(usage), records + 1)
    return sums
