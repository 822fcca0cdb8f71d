"""Totals of usage for people: a billing period's usage per customer, project, offering or resource,
and a month-by-month series for a chart. Carried records count like reported ones.

Usage is summed exactly, as decimals; the records' text values are never added as floats. Records
are read from their own table alone, and the few names and units of the totals looked up after:
joined to the catalog row by row, a month of 100,000 records took ten times as long.
"""

import datetime as dt
import json
from collections.abc import Iterable
from decimal import Decimal

from ledger.backends import Connection

from . import sql, usages

# What a report can be grouped by: the record's column naming the group, and the catalog table of its names.
GROUPS = {
    "customer": ("customer_uuid", "customers"),
    "project": ("project_uuid", "projects"),
    "offering": ("offering_uuid", "offerings"),
    "resource": ("resource_uuid", "resources"),
}


def period_totals(conn: Connection, scopes: dict | None, period: dt.date, by: str,
                  filters: dict | None = None) -> list[dict]:
    """One row per group and component type (and unit): the period's total usage and how many
    records it adds up, among the records matching `filters` (as for a usage list) that `scopes`
    may read; by group name, then type."""
    column, table = GROUPS[by]
    clause, params = usages.where(conn, scopes, {**(filters or {}), "billing_period": period.isoformat()})
    rows = conn.execute(f"SELECT u.{column}, u.offering_uuid, u.type, u.usage FROM component_usages u WHERE {clause}",
                        params)
    components = _components(conn)
    by_unit = _merged(((group, kind, components.get((offering, kind), (kind, ""))[1]), sums)
                      for (group, offering, kind), sums in _sums(rows).items())
    names = _names(conn, table, {group for group, _, _ in by_unit})
    totals = [
        {"period": f"{period:%Y-%m}", f"{by}_uuid": group, f"{by}_name": names.get(group, ""), "type": kind,
         "measured_unit": unit, "usage": f"{total:.2f}", "records": records}
        for (group, kind, unit), (total, records) in by_unit.items()
    ]
    return sorted(totals, key=lambda row: (row[f"{by}_name"], row[f"{by}_uuid"], row["type"], row["measured_unit"]))


def monthly_totals(conn: Connection, scopes: dict | None, filters: dict,
                   first: dt.date, last: dt.date) -> list[dict]:
    """The usage per billing period from `first` through `last` and component type, of the records
    matching `filters` (as for a usage list) that `scopes` may read; by type, then period."""
    clause, params = usages.where(conn, scopes, filters)
    rows = conn.execute(
        f"SELECT u.offering_uuid, u.type, u.billing_period, u.usage FROM component_usages u"
        f" WHERE {clause} AND u.billing_period BETWEEN ? AND ?",
        [*params, first.isoformat(), last.isoformat()],
    )
    components = _components(conn)
    merged = _merged(((kind, *components.get((offering, kind), (kind, "")), period), sums)
                     for (offering, kind, period), sums in _sums(rows).items())
    return [
        {"type": kind, "name": name, "measured_unit": unit, "billing_period": period,
         "usage": f"{total:.2f}", "records": records}
        for (kind, name, unit, period), (total, records) in sorted(merged.items())
    ]


def _sums(rows: Iterable[tuple]) -> dict[tuple, tuple[Decimal, int]]:
    """Rows of (*key, usage) summed per key: the total and how many rows."""
    return _merged((tuple(key), (Decimal(usage), 1)) for *key, usage in rows)


def _merged(sums: Iterable[tuple[tuple, tuple[Decimal, int]]]) -> dict[tuple, tuple[Decimal, int]]:
    """(key, (total, count)) pairs added up per key."""
    merged: dict[tuple, tuple[Decimal, int]] = {}
    for key, (total, count) in sums:
        before = merged.get(key, (Decimal(0), 0))
        merged[key] = (before[0] + total, before[1] + count)
    return merged


def _components(conn: Connection) -> dict[tuple[str, str], tuple[str, str]]:
    """(offering, type) -> (name, measured unit) of every component."""
    rows = conn.execute("SELECT offering_uuid, type, name, measured_unit FROM components")
    return {(offering, kind): (name, unit or "") for offering, kind, name, unit in rows}


def _names(conn: Connection, table: str, uuids: set[str]) -> dict[str, str]:
    rows = conn.execute(f"SELECT uuid, name FROM {table} WHERE {sql.dialect(conn).json_in.format('uuid')}",
                        (json.dumps(sorted(uuids)),))
    return dict(rows.fetchall())
