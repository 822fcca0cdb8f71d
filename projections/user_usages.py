"""The component-user-usage view: one row per (usage record, username).

A row holds what is its own, and a copy of its parent usage record's `date` and `type`: the
default order is the parent's (`-date`, type), and an index over the copy gives a page in that
order without sorting every user usage (1.2 s a page for 400,000 of them, 8.7 s for a provider's
owner). Everything else (placement, billing period, visibility) is read through the parent.
"""

import contextlib
import contextvars
import json
from collections.abc import Iterator

from ledger.backends import Connection
from ledger.backends.sql import STREAM_VERSION
from ledger.log.events import usage_record_uuid, usage_stream, user_usage_stream, user_usage_uuid

from . import catalog, placement, sql, usages

NAME = "user_usages"
TABLES = ("component_user_usages",)


def _user_usage_reported(conn, event) -> bool:
    data = event.data
    # An update changes only the usage: the user link stays as first reported (as in Waldur), and `created` too.
    conn.execute(
        "INSERT INTO component_user_usages"
        " (uuid, component_usage_uuid, username, usage, user_uuid, created, modified, date, type)"
        " SELECT ?, ?, ?, ?, ?, ?, ?, u.date, u.type FROM component_usages u WHERE u.uuid = ?"
        " ON CONFLICT (uuid) DO UPDATE SET usage = excluded.usage, modified = excluded.modified",
        (
            user_usage_uuid(data["component_usage_uuid"], data["username"]), data["component_usage_uuid"],
            data["username"], data["usage"], data["user_uuid"], event.recorded_at, event.recorded_at,
            data["component_usage_uuid"],
        ),
    )
    return True  # rows kept, or added (projections/runner.py)


# The usage records reported in the batch being folded, whose user usages take their new date at its end (see `batch`).
_reported: contextvars.ContextVar[set | None] = contextvars.ContextVar("reported", default=None)


@contextlib.contextmanager
def batch(conn) -> Iterator[None]:
    """While runner.apply folds a batch of events: the user usages of the records it reported take
    their parents' dates once, at its end, in one statement, not in one statement per report (a
    rebuild spent an eighth of its time on those). Nothing reads the copies while a batch folds."""
    reported = set()
    token = _reported.set(reported)
    try:
        yield
    finally:
        _reported.reset(token)
    if reported:  # not reached when the batch failed: its transaction is undone anyway
        _copy_dates(conn, reported)


def _usage_reported(conn, event) -> bool:
    """A report gives its record a new `date` (projections/usages.py): its user usages take the copy.

    A carried record keeps the start of its month as its date, so reports are the only change.
    """
    data = event.data
    record_uuid = usage_record_uuid(data["resource_uuid"], data["type"], data["billing_period"])
    reported = _reported.get()
    if reported is None:
        _copy_dates(conn, [record_uuid])
    else:
        reported.add(record_uuid)
    return True  # rows kept: only their copy of the date moved


def _copy_dates(conn, record_uuids) -> None:
    conn.execute(
        "UPDATE component_user_usages SET date = u.date FROM component_usages u"
        " WHERE u.uuid = component_user_usages.component_usage_uuid"
        f" AND {sql.dialect(conn).json_in.format('component_user_usages.component_usage_uuid')}",
        (json.dumps(sorted(record_uuids)),),
    )


HANDLERS = {"UserUsageReported": _user_usage_reported, "UsageReported": _usage_reported}

# User usages `uu` with their parents `u`: JOIN, or a join in order (SQLite's CROSS JOIN) to read the user usages first.
WITH_PARENTS = "component_user_usages uu {join} component_usages u ON u.uuid = uu.component_usage_uuid"
# A page's columns: the user usage's and its parent's own, in RECORD_KEYS' order, and NULL for the
# names of its placement, which placement.named adds from the catalog's rows.
PAGE_COLUMNS = (
    "SELECT uu.uuid, uu.user_uuid, uu.username, uu.component_usage_uuid, uu.usage, NULL,"
    " uu.created, uu.modified, NULL, u.resource_uuid, NULL, u.offering_uuid, NULL, u.project_uuid,"
    " NULL, u.customer_uuid, u.type, u.date, u.billing_period"
)
RECORD_KEYS = (
    "uuid", "user_uuid", "username", "component_usage_uuid", "usage", "measured_unit", "created", "modified",
    "resource_name", "resource_uuid", "offering_name", "offering_uuid", "project_name", "project_uuid",
    "customer_name", "customer_uuid", "component_type", "date", "billing_period",
)
ORDER_COLUMNS = {
    "component_usage__billing_period": "u.billing_period",
    "usage": "CAST(uu.usage AS {real})",
    "username": "uu.username",
}
# The parent's date and type, as copied into the row (see the module's docstring).
DEFAULT_ORDER = "uu.date DESC, uu.type, uu.uuid"
# The parent's kept filters (see there), and a user usage's own username and parent never change.
KEPT_FILTERS = usages.KEPT_FILTERS | {"username", "component_usage_billing_period"}


def where(conn: Connection, scopes: dict | None, filters: dict) -> tuple[str, list]:
    """Visibility and the parent record's filters, through the parent; then this view's own filters.

    `filters` holds the usage view's filters plus `uuid` (of the user usage record), `username`
    (a case-insensitive substring) and `component_usage_billing_period`.
    """
    own = ("uuid", "username", "component_usage_billing_period")
    clause, params = usages.where(conn, scopes, {name: value for name, value in filters.items() if name not in own})
    clauses = [clause]
    if "uuid" in filters:
        clauses.append("uu.uuid = ?")
        params.append(filters["uuid"])
    if "username" in filters:
        clauses.append(sql.dialect(conn).contains.format("lower(uu.username)", "lower(?)"))
        params.append(filters["username"])
    if "component_usage_billing_period" in filters:
        clauses.append("u.billing_period = ?")
        params.append(filters["component_usage_billing_period"])
    return " AND ".join(clauses), params


def count(conn: Connection, scopes: dict | None, filters: dict) -> int:
    return count_since(conn, scopes, filters)[0]


def count_since(conn: Connection, scopes: dict | None, filters: dict, mark: int = 0) -> tuple[int, int]:
    """As usages.count_since. Counted over the user usages, each looked up in its parent: read from
    the parents' side, through a provider's index, each of a million parents took a lookup of its
    user usages."""
    clause, params = where(conn, usages.visible_scopes(conn, scopes, filters), filters)
    dialect = sql.dialect(conn)
    source = WITH_PARENTS.format(join=_parent_join(conn, filters))
    if mark:  # the user usages past the mark, by row id, each looked up in its parent
        source = (f"component_user_usages uu{dialect.not_indexed} {dialect.ordered_join} component_usages u"
                  " ON u.uuid = uu.component_usage_uuid")
        clause, params = f"uu.id > ? AND {clause}", [mark, *params]
    return conn.execute(
        f"SELECT (SELECT COUNT(*) FROM {source} WHERE {clause}), (SELECT MAX(id) FROM component_user_usages)",
        params,
    ).fetchone()


def _few_parents(filters: dict) -> bool:
    return "resource_uuid" in filters or "uuid" in filters


def _parent_join(conn: Connection, filters: dict) -> str:
    """How to join the parents: after the user usages (in order), unless a filter names a few parents."""
    return "JOIN" if _few_parents(filters) else sql.dialect(conn).ordered_join


def records(conn: Connection, scopes: dict | None, filters: dict, order: list[str],
            limit: int, offset: int = 0, arriving=None) -> list[dict]:
    """A page in the default order is read off an index, as the usage view's is (see there):

    - for a caller who sees everything the filters select, off the user usages' own order, each
      checked against its parent's filters: a page reads about as many as it shows, unless the
      filters keep only a few of them;
    - for a caller who sees some scopes, off each scope's index of parents (usages.records);
    - with a resource filter (a few records) or an ordering given, by sorting what matches.

    The page's statement reads the request's arrival too, for a Ledger `arriving` (sql.rows_arriving).
    """
    scopes = usages.visible_scopes(conn, scopes, filters)
    scoped = [(column, value) for column, values in (scopes or {}).items() for value in values]
    join = _parent_join(conn, filters)  # in SQLite's CROSS JOIN, the user usages are read first, in index order
    if scopes is not None and not order and not _few_parents(filters) and len(scoped) <= usages.MAX_SCOPES_MERGED:
        clause, params = _first_of_each_scope(conn, scoped, filters, offset + limit)
        join = "JOIN"
    else:
        clause, params = where(conn, scopes, filters)
    # As for usage records, the page is read without the catalog's names (see usages.records).
    terms = usages.order_by(conn, order, ORDER_COLUMNS, DEFAULT_ORDER)
    page = f"SELECT uu.uuid FROM {WITH_PARENTS.format(join=join)} WHERE {clause} ORDER BY {terms} {sql.limit(limit, offset)}"
    rows = sql.rows_arriving(
        conn,
        f"{PAGE_COLUMNS} FROM ({page}) page {sql.dialect(conn).ordered_join} component_user_usages uu"
        f" ON uu.uuid = page.uuid JOIN component_usages u ON u.uuid = uu.component_usage_uuid ORDER BY {terms}",
        params, arriving,
    )
    return placement.named(conn, [dict(zip(RECORD_KEYS, row)) for row in rows], arriving,
                           type_key="component_type", name_key=None)


def _first_of_each_scope(conn: Connection, scoped: list[tuple[str, str]], filters: dict,
                         count: int) -> tuple[str, list]:
    """A WHERE clause for the first `count` filtered user usages (in the default order) of each scope.

    Each scope's parents are read in order off the scope's index; only the user usages of parents
    with the same date and type are sorted among themselves.
    """
    clause, params = where(conn, None, filters)
    selects, all_params = [], []
    for column, value in scoped:
        selects.append(
            "SELECT uuid FROM (SELECT uu.uuid FROM component_usages u"
            " JOIN component_user_usages uu ON uu.component_usage_uuid = u.uuid"
            f" WHERE u.{column} = ? AND {clause} ORDER BY u.date DESC, u.type, uu.uuid {sql.limit(count)}) first"
        )
        all_params += [value, *params]
    return (f"uu.uuid IN ({' UNION '.join(selects)})", all_params) if selects else ("FALSE", [])


def report_reads(conn: Connection, record_uuid: str, usernames: list[str]) -> dict | None:
    """What a report of users' usage of a record in the record's own month reads, in one statement,
    which is a snapshot of its own (a server's round trip, where reading it piece by piece in a
    transaction took seven): the record (usages.COLUMNS); its resource's plan periods; its
    component's billing type; the usage each of `usernames` holds of it (by username); and the
    versions of the record's stream and of the usernames' user usage streams, as the views have
    folded them and as the log holds them (by stream; 0 for a stream without events). None when
    there is no such record.

    Read by one statement on SQLite too, where the views are a file of their own: if the log was
    read before the views, versions past the log's read are missing, and the append of a decision
    that read them fails as overtaken, to be made again."""
    dialect = sql.dialect(conn)
    rows = dialect.rows_as_json.format
    usernames = list(dict.fromkeys(usernames))
    shares = {user_usage_uuid(record_uuid, username): username for username in usernames}
    streams = ["'usage/' || u.resource_uuid || '/' || u.type || '/' || substr(u.billing_period, 1, 7)",
               *("?" for _ in usernames)]
    # Each stream's last version that the views have folded, and its last in the log.
    versions = [f"({STREAM_VERSION.format(stream=stream, bound=' AND e.seq <= folded.position')}),"
                f" ({STREAM_VERSION.format(stream=stream, bound='')})" for stream in streams]
    row = conn.execute(
        f"SELECT {', '.join(f'u.{column}' for column in usages.COLUMNS)},"
        f""" (SELECT {rows('p.uuid, p.start, p."end"')} FROM plan_periods p WHERE p.resource_uuid = u.resource_uuid),"""
        " (SELECT c.billing_type FROM components c WHERE c.offering_uuid = u.offering_uuid AND c.type = u.type),"
        f" (SELECT {rows('s.uuid, s.usage')} FROM component_user_usages s WHERE {dialect.json_in.format('s.uuid')}),"
        f" {', '.join(versions)}"
        " FROM component_usages u, (SELECT MIN(position) AS position FROM projection_checkpoints) folded"
        " WHERE u.uuid = ?",
        (json.dumps(list(shares)),
         *(stream for name in usernames for stream in [user_usage_stream(record_uuid, name)] * 2), record_uuid),
    ).fetchone()
    if row is None:
        return None
    width = len(usages.COLUMNS)
    record = dict(zip(usages.COLUMNS, row[:width]))
    plan_periods, billing_type, held, *found = row[width:]
    names = [usage_stream(record["resource_uuid"], record["type"], record["billing_period"]),
             *(user_usage_stream(record_uuid, name) for name in usernames)]
    return {
        "record": record,
        "plan_periods": catalog.plan_periods_by_start(sql.json_rows(plan_periods)),
        "billing_type": billing_type,
        "held": {shares[uuid]: usage for uuid, usage in sql.json_rows(held)},
        "versions": {name: version or 0 for name, version in zip(names, found[::2])},
        "logged": {name: version or 0 for name, version in zip(names, found[1::2])},
    }


def held_usages(conn: Connection, uuids: list[str]) -> dict[str, str]:
    """The usage each of these user usage records holds, by uuid; those that do not exist are left out."""
    return dict(conn.execute(
        f"SELECT uuid, usage FROM component_user_usages WHERE {sql.dialect(conn).json_in.format('uuid')}",
        (json.dumps(uuids),),
    ).fetchall())
