"""The component-usage view: one row per (resource, component type, billing period).

Rows carry the resource's offering, provider, project and consumer customer so that
every filter and the visibility rule are plain indexed columns of one table.

Carried values (README: carried values) are written here: on a report, a month's start and a
resource's termination, the view reads the chain of records concerned, asks the carry-forward
rule which carried records it should hold, and writes them.
"""

import contextlib
import contextvars
import datetime as dt
import json
from collections.abc import Iterator

from ledger.backends import Connection
from ledger.backends.sql import STREAM_VERSION
from ledger.log.events import usage_record_uuid, usage_stream
from ledger.rules import clock
from ledger.rules.carry_forward import Chain, carried_records

from . import catalog, placement, schema, sql

NAME = "usages"
TABLES = ("component_usages", "billing_periods")

# Every column but the row id (projections/schema.py), as commands and the carry-forward rule see a record.
COLUMNS = (
    "uuid", "resource_uuid", "offering_uuid", "provider_uuid", "project_uuid", "customer_uuid", "type",
    "billing_period", "plan_period_uuid", "usage", "description", "missing_usage_policy", "date", "created",
    "modified_by", "carried", "version",
)
# The latest started billing period as the batch being folded knows it (see `batch`).
_latest_started: contextvars.ContextVar[dict | None] = contextvars.ContextVar("latest_started", default=None)
# The records reported in the batch being folded and not yet written, by uuid (see `write_gathered`).
_gathered: contextvars.ContextVar[dict | None] = contextvars.ContextVar("gathered", default=None)
# The events whose records a batch gathers (projections/runner.py writes them before any other event).
GATHERED = ("UsageReported",)


@contextlib.contextmanager
def batch(conn) -> Iterator[None]:
    """While runner.apply folds a batch of events: the latest started billing period is read once
    (and again after the batch starts one), not for every report; and reports that carry nothing
    are gathered, to be written together (`write_gathered`). Each read was a round trip on
    PostgreSQL, where the fold's writes travel together (EventStore.batched); each write, a
    statement that the client took a tenth of a millisecond to send."""
    tokens = _latest_started.set({}), _gathered.set({})
    try:
        yield
    finally:
        _latest_started.reset(tokens[0])
        _gathered.reset(tokens[1])


def latest_started(conn) -> tuple[str, str] | None:
    """The latest started billing period's (billing_period, timezone); None before the first."""
    known = _latest_started.get()
    if known is not None and "row" in known:
        return known["row"]
    row = conn.execute("SELECT billing_period, timezone FROM billing_periods ORDER BY billing_period DESC LIMIT 1").fetchone()
    if known is not None:
        known["row"] = row
    return row


def _usage_reported(conn, event) -> bool:
    data = event.data
    uuid = usage_record_uuid(data["resource_uuid"], data["type"], data["billing_period"])
    row = [uuid, data["type"], data["billing_period"], data["plan_period_uuid"], data["amount"], data["description"],
           data["missing_usage_policy"], event.occurred_at, event.recorded_at, event.actor_id, event.version,
           data["resource_uuid"]]  # the parameters of _write_records' statement
    batched = _gathered.get()  # None when folded alone, outside a batch
    gathered = {} if batched is None else batched
    if uuid in gathered:  # reported twice in the batch: the first report made the record, or took it over
        row[8] = gathered[uuid][8]  # `created`, as the first report set it (see _write_records)
    gathered[uuid] = row  # where the first report put it: rows are made in the order of their first reports
    period = dt.date.fromisoformat(data["billing_period"])
    next_period = clock.next_period(period)
    last = latest_started(conn)
    if batched is not None and (last is None or next_period.isoformat() > last[0]):
        return True  # no month after it to carry into: written with the batch's other reports
    _write_records(conn, gathered)
    # Carried records are replaced or removed: rows changed (projections/runner.py).
    return not carry_forward(conn, [(data["resource_uuid"], data["type"], next_period)])


def write_gathered(conn) -> None:
    """Writes the records that the batch's reports gathered: before any other event is folded (its
    handlers may read them), and at the batch's end (runner.apply)."""
    gathered = _gathered.get()
    if gathered:
        _write_records(conn, gathered)


def _write_records(conn, gathered: dict[str, list]) -> None:
    """Writes the reported records `gathered` (rows of _usage_reported, at most one a record) by one
    statement prepared once and its rows sent together, and forgets them. (One statement of all
    the rows, joined to the catalog from a JSON array, was planned as a scan of every resource.)
    The resource's placement comes from the catalog view. A record made now (or a carried one now
    reported) takes the report's time as `created`, an updated one keeps its own."""
    rows = list(gathered.values())
    gathered.clear()
    conn.executemany(
        "INSERT INTO component_usages (uuid, resource_uuid, offering_uuid, provider_uuid, project_uuid,"
        " customer_uuid, type, billing_period, plan_period_uuid, usage, description, missing_usage_policy,"
        " date, created, modified_by, carried, version)"
        " SELECT ?, r.uuid, r.offering_uuid, o.customer_uuid, r.project_uuid, p.customer_uuid,"
        " ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?"
        " FROM resources r JOIN offerings o ON o.uuid = r.offering_uuid JOIN projects p ON p.uuid = r.project_uuid"
        " WHERE r.uuid = ?"
        " ON CONFLICT (uuid) DO UPDATE SET plan_period_uuid = excluded.plan_period_uuid, usage = excluded.usage,"
        " description = excluded.description, missing_usage_policy = excluded.missing_usage_policy,"
        " date = excluded.date, modified_by = excluded.modified_by,"
        " created = CASE WHEN component_usages.carried <> 0 THEN excluded.created ELSE component_usages.created END,"
        " carried = 0, version = excluded.version",
        rows,
    )


def _billing_period_started(conn, event):
    data = event.data
    conn.execute(
        "INSERT INTO billing_periods (billing_period, starts_at, timezone) VALUES (?, ?, ?)"
        " ON CONFLICT (billing_period) DO NOTHING",
        (data["billing_period"], data["starts_at"], data["timezone"]),
    )
    if (known := _latest_started.get()) is not None:
        known.clear()  # read again
    # Every chain whose latest record before this month keeps going continues into it.
    heads = conn.execute(
        "SELECT u.resource_uuid, u.type, u.billing_period FROM component_usages u"
        " JOIN (SELECT resource_uuid, type, MAX(billing_period) AS latest FROM component_usages"
        "       WHERE billing_period < ? GROUP BY resource_uuid, type) h"
        " ON h.resource_uuid = u.resource_uuid AND h.type = u.type AND h.latest = u.billing_period"
        " WHERE u.missing_usage_policy IN ('reuse', 'zero')",
        (data["billing_period"],),
    ).fetchall()
    carry_forward(conn, [(resource_uuid, component_type, clock.next_period(dt.date.fromisoformat(latest)))
                         for resource_uuid, component_type, latest in heads])


def _resource_defined(conn, event):
    resource_uuid = event.data["uuid"]
    # A resource moved to another project (or offering) takes its records' placement with it.
    conn.execute(
        "UPDATE component_usages SET offering_uuid = r.offering_uuid, provider_uuid = o.customer_uuid,"
        " project_uuid = r.project_uuid, customer_uuid = p.customer_uuid"
        " FROM resources r JOIN offerings o ON o.uuid = r.offering_uuid JOIN projects p ON p.uuid = r.project_uuid"
        " WHERE r.uuid = ? AND component_usages.resource_uuid = r.uuid",
        (resource_uuid,),
    )
    # Termination (or its reversal) changes which months may receive carried values: walk every chain again.
    chains = conn.execute(
        "SELECT type, MIN(billing_period) FROM component_usages WHERE resource_uuid = ? AND carried = 0 GROUP BY type",
        (resource_uuid,),
    ).fetchall()
    carry_forward(conn, [(resource_uuid, component_type, clock.next_period(dt.date.fromisoformat(first)))
                         for component_type, first in chains], whole_chain=True)


def carry_forward(conn, chains: list[tuple[str, str, dt.date]], whole_chain: bool = False) -> bool:
    """Writes the carried records of each chain (resource, component type, start) from its start
    through the last started period as the carry-forward rule wants them (see there for
    `whole_chain`). Returns whether it wrote one.

    The chains are read a chunk at a time, every read of a chunk asked for before any is read
    back, as many as the dialect's `reads_ahead`: on PostgreSQL, where a fold's statements are
    pipelined (EventStore.batched), a chunk then costs one round trip, not three per chain. A
    month's start carries every chain that goes on, and those round trips were a third of a
    rebuild. Chains are rows of their own, so one's writes do not change what another reads."""
    last = latest_started(conn)
    if last is None:
        return False
    chains = [chain for chain in chains if chain[2].isoformat() <= last[0]]  # others have no month to carry into
    wrote, together = False, chains_read_together(conn)
    for first in range(0, len(chains), together):
        chunk = chains[first:first + together]
        asked = [_ask_chain(conn, resource_uuid, component_type, start, last[0])
                 for resource_uuid, component_type, start in chunk]
        read = [_chain_of(*cursors) for cursors in asked]
        for (_, _, start), chain in zip(chunk, read):
            changes = carried_records(chain, start, dt.date.fromisoformat(last[0]), last[1], whole_chain)
            for change in changes:
                if change.record is None:
                    conn.execute("DELETE FROM component_usages WHERE uuid = ?", (change.uuid,))
                else:
                    sql.upsert(conn, "component_usages", {name: change.record[name] for name in COLUMNS})
            wrote = wrote or bool(changes)
    return wrote


def chains_read_together(conn) -> int:
    return max(1, sql.dialect(conn).reads_ahead // 3)  # three reads a chain


def _ask_chain(conn, resource_uuid: str, component_type: str, start: dt.date, last: str) -> tuple:
    """The cursors of what the rule needs of one chain, asked for and not yet read: its records from
    the period before `start` through `last`, its resource's plan periods and its termination."""
    return (
        conn.execute(
            f"SELECT {', '.join(COLUMNS)} FROM component_usages"
            " WHERE resource_uuid = ? AND type = ? AND billing_period BETWEEN ? AND ?",
            (resource_uuid, component_type, clock.previous_period(start).isoformat(), last),
        ),
        catalog.asked_plan_periods(conn, resource_uuid),
        conn.execute("SELECT terminated_at FROM resources WHERE uuid = ?", (resource_uuid,)),
    )


def _chain_of(records, plan_periods, terminated) -> Chain:
    """The Chain the rule reads, from the cursors of _ask_chain: records by billing period."""
    records = (dict(zip(COLUMNS, row)) for row in records)
    terminated_at = terminated.fetchone()
    return Chain(
        {record["billing_period"]: record for record in records},
        catalog.plan_periods_of(plan_periods),
        terminated_at[0] if terminated_at else None,
    )


def _project_defined(conn, event):
    conn.execute(
        "UPDATE component_usages SET customer_uuid = ? WHERE project_uuid = ? AND customer_uuid != ?",
        (event.data["customer_uuid"], event.data["uuid"], event.data["customer_uuid"]),
    )


def _offering_defined(conn, event):
    conn.execute(
        "UPDATE component_usages SET provider_uuid = ? WHERE offering_uuid = ? AND provider_uuid != ?",
        (event.data["customer_uuid"], event.data["uuid"], event.data["customer_uuid"]),
    )


HANDLERS = {
    "UsageReported": _usage_reported,
    "BillingPeriodStarted": _billing_period_started,
    "ResourceDefined": _resource_defined,
    "ProjectDefined": _project_defined,
    "OfferingDefined": _offering_defined,
}


# A page's columns: the record's own, in RECORD_KEYS' order, and NULL for the names of its placement,
# which placement.named adds from the catalog's rows.
PAGE_COLUMNS = (
    "SELECT u.uuid, u.created, u.description, u.type, NULL, NULL, u.usage, u.date,"
    " u.missing_usage_policy, NULL, u.resource_uuid, NULL, u.offering_uuid, NULL, u.project_uuid,"
    " NULL, u.customer_uuid, u.billing_period, u.modified_by"
)
RECORD_KEYS = (
    "uuid", "created", "description", "type", "name", "measured_unit", "usage", "date",
    "missing_usage_policy", "resource_name", "resource_uuid", "offering_name", "offering_uuid", "project_name",
    "project_uuid", "customer_name", "customer_uuid", "billing_period", "modified_by",
)
ORDER_COLUMNS = {
    "billing_period": "u.billing_period",
    "usage": "CAST(u.usage AS {real})",  # a dialect's floating-point type (see order_by)
    "missing_usage_policy": "u.missing_usage_policy",
}
DEFAULT_ORDER = "u.date DESC, u.type, u.uuid"
# Filters on what a record keeps while reports change its values: a count filtered on these alone
# stays right until an event changes rows (projections/runner.py, api/reading.py).
KEPT_FILTERS = frozenset({
    "uuid", "resource_uuid", "offering_uuid", "project_uuid", "customer_uuid", "type", "billing_period",
    "billing_period_year", "billing_period_month",
})


def visibility(conn: Connection, scopes: dict[str, list[str]] | None, term: str = "{}") -> tuple[str, list]:
    """A WHERE clause limiting records to those a caller may read; None means every record. Each
    scope's column is written into `term` (see `scope_term`)."""
    if scopes is None:
        return "TRUE", []
    clauses, params = [], []
    for column, values in scopes.items():
        if values:
            clauses.append(sql.dialect(conn).json_in.format(term.format(f"u.{column}")))
            params.append(json.dumps(values))
    return f"({' OR '.join(clauses) or 'FALSE'})", params


def scope_term(conn: Connection, filters: dict) -> str:
    """How a scope's column is written where the filters keep to records carried forward: as a term
    looked up in no index, so that they are found through their own index, in order, not through a
    scope's, which holds all of the scope's records (SQLite, without statistics, took the latter:
    1.4 s to count none of a million). Otherwise as it is."""
    return sql.dialect(conn).unindexed if carried_only(filters) else "{}"


def where(conn: Connection, scopes: dict | None, filters: dict) -> tuple[str, list]:
    """Visibility and filters as one WHERE clause. `filters` maps a filter name to its parsed value."""
    clause, params = visibility(conn, scopes, scope_term(conn, filters))
    clauses = [clause]
    for column in ("uuid", "resource_uuid", "offering_uuid", "project_uuid", "customer_uuid", "type", "billing_period"):
        if column in filters:
            clauses.append(f"u.{column} = ?")
            params.append(filters[column])
    year, month = filters.get("billing_period_year"), filters.get("billing_period_month")
    if year is not None and month is not None:
        # One month, as its billing period: read off that column's index, where matching the parts
        # of the text read every record (0.07 s at 100,000 records on PostgreSQL).
        clauses.append("u.billing_period = ?")
        params.append(f"{year:04d}-{month:02d}-01")
    elif year is not None:
        clauses.append("substr(u.billing_period, 1, 4) = ?")
        params.append(f"{year:04d}")
    elif month is not None:
        clauses.append("substr(u.billing_period, 6, 2) = ?")
        params.append(f"{month:02d}")
    if "date_after" in filters:
        clauses.append("u.date >= ?")
        params.append(filters["date_after"].isoformat())
    if "date_before" in filters and filters["date_before"] < dt.date.max:  # the last day bounds nothing
        # Inclusive of the whole day: anything before the next day's start.
        clauses.append("u.date < ?")
        params.append((filters["date_before"] + dt.timedelta(days=1)).isoformat())
    if "missing_usage_policy" in filters:
        clauses.append(sql.dialect(conn).json_in.format("u.missing_usage_policy"))
        params.append(json.dumps(filters["missing_usage_policy"]))
        if carried_only(filters):  # implied, and written out: the planners then read the carried records' index
            clauses.append(f"u.{schema.CARRIED_POLICIES}")
    return " AND ".join(clauses), params


def carried_only(filters: dict) -> bool:
    """Whether the filters keep to records carried forward (schema.CARRIED_POLICIES)."""
    return "none" not in filters.get("missing_usage_policy", ("none",))


def order_by(conn: Connection, keys: list[str], columns: dict[str, str] = ORDER_COLUMNS,
             default: str = DEFAULT_ORDER) -> str:
    """`keys` are ordering names of `columns`, each with an optional leading '-'; the default order breaks ties."""
    real = sql.dialect(conn).real
    terms = [f"{columns[key.lstrip('-')].format(real=real)}{' DESC' if key.startswith('-') else ''}" for key in keys]
    return ", ".join(terms + [default])


def count(conn: Connection, scopes: dict | None, filters: dict) -> int:
    return count_since(conn, scopes, filters)[0]


def count_since(conn: Connection, scopes: dict | None, filters: dict, mark: int = 0) -> tuple[int, int]:
    """The count of matching records past a row mark (0: of all), and the mark of the last record.

    Rows get ever greater row ids (`id`) as they are added, so a count kept with its mark grows by
    the count past it until a row is removed (projections/runner.py). That count reads the rows
    past the mark alone (SQLite's NOT INDEXED: by row id, not through a filter's index).
    """
    clause, params = where(conn, visible_scopes(conn, scopes, filters), filters)
    not_indexed = sql.dialect(conn).not_indexed
    table, past = (f"component_usages u{not_indexed}", "u.id > ? AND ") if mark else ("component_usages u", "")
    return conn.execute(
        f"SELECT (SELECT COUNT(*) FROM {table} WHERE {past}{clause}), (SELECT MAX(id) FROM component_usages)",
        [mark, *params] if mark else params,
    ).fetchone()


def visible_scopes(conn: Connection, scopes: dict | None, filters: dict) -> dict | None:
    """The scopes, or None when the filters alone keep to records that they show: an offering the
    caller sees whole, as its manager or its provider's owner or manager (a site agent's list).

    Then the offering's index answers by itself; checking every record's scopes took a read of
    each record (0.35 s to count a quarter of a million).
    """
    offering = filters.get("offering_uuid")
    if scopes is None or offering is None:
        return scopes
    if offering in scopes.get("offering_uuid", ()):
        return None
    provider = conn.execute("SELECT customer_uuid FROM offerings WHERE uuid = ?", (offering,)).fetchone()
    # A record's provider_uuid is its offering's customer: the view keeps them equal.
    return None if provider and provider[0] in scopes.get("provider_uuid", ()) else scopes


# Asked for the records visible through a caller's scopes in the default order, SQLite gathers
# every visible record and sorts them: about five seconds a page for a provider with a million.
# So a page in the default order is taken from the first `offset + limit` records of each scope,
# each read in order off an index (the scope's, or a filter's); their union holds the page. Past
# this many scopes (a caller in very many projects) the plain query is used.
MAX_SCOPES_MERGED = 50
# A `limit` of `records` for every matching record: a number both dialects take in LIMIT (SQLite's
# -1 for "no limit" is an error on PostgreSQL), far past any table's size.
EVERY = 2**62


def records(conn: Connection, scopes: dict | None, filters: dict, order: list[str],
            limit: int, offset: int = 0, arriving=None) -> list[dict]:
    """A page of the records that match, in `order` (or the default order); the page's statement
    reads the request's arrival too, for a Ledger `arriving` (sql.rows_arriving)."""
    scopes = visible_scopes(conn, scopes, filters)
    scoped = [(column, value) for column, values in (scopes or {}).items() for value in values]
    if scopes is not None and not order and 0 < len(scoped) <= MAX_SCOPES_MERGED:
        clause, params = _first_of_each_scope(conn, scoped, filters, offset + limit)
    else:
        clause, params = where(conn, scopes, filters)
    # The page's records are found (and sorted, for an ordering given) by their uuids alone, in an
    # index where one holds what the filters and the order need; only the page's rows are then read,
    # by uuid, and without the catalog's names (placement.py). Read whole while found, each record an
    # ordered scan passes over is read from the table: SQLite's first page filtered on `type` took
    # 16 ms instead of 3 at a million records; PostgreSQL sorted whole rows for `o=billing_period`
    # in 35 ms where it sorted uuids in 13 (100,000 records), and read 18,171 buffers 20,000 records
    # past an offset instead of 4,039. Only a first page in the default order, off an index in that
    # order, is read whole, where the dialect gains by it (sql.Dialect.first_page_whole).
    terms, dialect = order_by(conn, order), sql.dialect(conn)
    found = f"FROM component_usages u WHERE {clause} ORDER BY {terms} {sql.limit(limit, offset)}"
    if order or offset or not dialect.first_page_whole:
        found = (f"FROM (SELECT u.uuid {found}) page {dialect.ordered_join} component_usages u"
                 f" ON u.uuid = page.uuid ORDER BY {terms}")
    rows = sql.rows_arriving(conn, f"{PAGE_COLUMNS} {found}", params, arriving)
    return placement.named(conn, [dict(zip(RECORD_KEYS, row)) for row in rows], arriving)


def _first_of_each_scope(conn: Connection, scoped: list[tuple[str, str]], filters: dict,
                         count: int) -> tuple[str, list]:
    """A WHERE clause for the first `count` filtered records (in the default order) of each scope."""
    clause, params = where(conn, None, filters)
    term = scope_term(conn, filters)
    selects, all_params = [], []
    for column, value in scoped:
        # A scope without records (a provider's own customer as a consumer, say) is left out: read
        # in the order of a filter's index, its few matches (or none) took a scan of all of them.
        # Looked for in the order of the scope's index (its column, then date): planned for any
        # value, a bare LIMIT 1 was a scan of the table where most records share one value
        # (PostgreSQL's generic plan, 37 ms at 100,000 records).
        if conn.execute(f"SELECT 1 FROM component_usages WHERE {column} = ? ORDER BY date LIMIT 1",
                        (value,)).fetchone() is None:
            continue
        selects.append(
            f"SELECT uuid FROM (SELECT u.uuid FROM component_usages u WHERE {term.format(f'u.{column}')} = ?"
            f" AND {clause}"
            f" ORDER BY {DEFAULT_ORDER} {sql.limit(count)}) first"
        )
        all_params += [value, *params]
    return (f"u.uuid IN ({' UNION '.join(selects)})", all_params) if selects else ("FALSE", [])


def carried_from(conn: Connection, resource_uuid: str, component_type: str, billing_period: str) -> str | None:
    """The billing period of the reported record whose value a carried record holds: the latest
    reported one before it (a carried chain runs unbroken from it). None for a reported record."""
    row = conn.execute(
        "SELECT carried, (SELECT MAX(billing_period) FROM component_usages s WHERE s.resource_uuid = u.resource_uuid"
        " AND s.type = u.type AND s.billing_period < u.billing_period AND s.carried = 0)"
        " FROM component_usages u WHERE resource_uuid = ? AND type = ? AND billing_period = ?",
        (resource_uuid, component_type, billing_period),
    ).fetchone()
    return row[1] if row and row[0] else None


def stored_record(conn: Connection, uuid: str, arriving=None) -> dict | None:
    """One record with every column of the view, for the commands that decide on it; the statement
    reads the request's arrival too, for a Ledger `arriving` (sql.rows_arriving)."""
    select = f"SELECT {', '.join(COLUMNS)} FROM component_usages WHERE uuid = ?"
    rows = sql.rows_arriving(conn, select, [uuid], arriving)
    return dict(zip(COLUMNS, rows[0])) if rows else None


def report_reads(conn: Connection, plan_period_uuid: str | None, resource_uuid: str | None, billing_period: str,
                 types: list[str], arriving=None) -> dict:
    """What a usage report's decision reads, in one statement, which is a snapshot of its own (a
    server's round trip, and no transaction around it): the plan period the report names, the
    resources it names (catalog.resource's rows), and of its target, the plan period's resource or
    else the one named: its plan periods, its offering's billing types, and its records of `types`
    in the billing period (by type, each with the version of its stream that the view holds), and
    the version of each of those streams in the log (by stream; none for a stream without events),
    which may be past the view's. It reads the request's arrival too, for a Ledger `arriving`
    (sql.rows_arriving)."""
    rows = sql.dialect(conn).rows_as_json.format
    target = "coalesce(chosen.resource_uuid, ?)"
    streams = [f"/{kind}/{billing_period[:7]}" for kind in types]  # after the resource: events.usage_stream
    logged_stream = f"'usage/' || {target} || ?"
    logged_version = f"({STREAM_VERSION.format(stream=logged_stream, bound='')})"
    of_types = f"type IN ({', '.join('?' for _ in types)})" if types else "FALSE"  # `IN ()`: PostgreSQL refuses it
    row, = sql.rows_arriving(
        conn,
        f'SELECT chosen.uuid, chosen.resource_uuid, chosen.start, chosen."end",'
        f" (SELECT {rows(', '.join(catalog.RESOURCE_COLUMNS))} {catalog.RESOURCE_FROM}"
        f" WHERE r.uuid IN (chosen.resource_uuid, ?)),"
        f""" (SELECT {rows('uuid, start, "end"')} FROM plan_periods WHERE resource_uuid = {target}),"""
        f" (SELECT {rows('c.type, c.billing_type')} FROM components c JOIN resources r"
        f" ON r.offering_uuid = c.offering_uuid WHERE r.uuid = {target}),"
        f" (SELECT {rows(', '.join(COLUMNS))} FROM component_usages WHERE resource_uuid = {target}"
        f" AND billing_period = ? AND {of_types})"
        f"{''.join(f', {logged_version}' for _ in streams)}"
        f" FROM (SELECT 1) one LEFT JOIN plan_periods chosen ON chosen.uuid = ?",
        [resource_uuid, resource_uuid, resource_uuid, resource_uuid, billing_period, *types,
         *(value for stream in streams for value in (resource_uuid, stream)), plan_period_uuid],
        arriving,
    )
    resources, plan_periods, components, records = map(sql.json_rows, row[4:8])
    target_uuid = row[1] or resource_uuid
    logged = {usage_stream(target_uuid, kind, billing_period): version
              for kind, version in zip(types, row[8:]) if version is not None}
    return {
        "chosen": dict(zip(("uuid", "resource_uuid", "start", "end"), row[:4])) if row[0] else None,
        "resources": {found[0]: dict(zip(catalog.RESOURCE_KEYS, found)) for found in resources},
        "plan_periods": catalog.plan_periods_by_start(plan_periods),
        "components": dict(components),
        "records": {record["type"]: record for record in (dict(zip(COLUMNS, found)) for found in records)},
        "logged": logged,
    }
