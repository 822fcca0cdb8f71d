"""The views' tables, their indexes and their checkpoints: declared once, created in the dialect of
the connection (projections/sql.py names the differences).

A view's table found with other columns than declared here is of an older release's shape: it is
dropped and made anew, and the views are folded again from the log (`runner.create` says so).
"""

import dataclasses

from ledger.backends import Connection

from . import sql


@dataclasses.dataclass(frozen=True)
class Table:
    """A table: its columns by kind (text, integer, blob, or row_id: an autoincrementing id that is
    the primary key), its key (the primary key, or a unique one beside a row id), its indexes, each
    a tuple of columns, any of them followed by " DESC", and the columns that may hold no NULL."""

    name: str
    columns: dict[str, str]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    required: tuple[str, ...] = ()
    # Indexes that only reads use, not the fold's own statements: a rebuild makes them after folding,
    # which at a million records takes a fraction of keeping them up to date row by row.
    read_indexes: tuple[tuple[str, ...], ...] = ()
    # Read indexes of the rows that meet a condition alone, by name: (name, columns, condition).
    # Writing a row outside the condition costs them nothing.
    partial_indexes: tuple[tuple[str, tuple[str, ...], str], ...] = ()
    # Written with the log, not folded from it (idempotency keys, the token key): kept in the log's
    # own schema, not the views' (projections/sql.py `views_schema`).
    with_the_log: bool = False

    def schema(self, dialect: "sql.Dialect") -> str:
        """What goes before the table's (and its indexes') names in the DDL making them."""
        return "" if self.with_the_log else dialect.views_schema


def _column(term: str) -> str:
    """An index's term with its column quoted: `type DESC` -> `"type" DESC`."""
    name, _, order = term.partition(" ")
    return f'"{name}"{" " + order if order else ""}'


def index_name(table: str, columns: tuple[str, ...]) -> str:
    return "_".join(["idx", table, *(term.replace(" DESC", "_desc") for term in columns)])


def statements(table: Table, dialect: sql.Dialect, read_indexes: bool = True) -> list[str]:
    """The DDL making a table and its indexes where they are missing (without `read_indexes`, those
    only reads use are left to `make_read_indexes`)."""
    columns = [
        f'"{name}" {dialect.types[kind]}{" PRIMARY KEY" if kind == "row_id" else ""}'
        f'{" NOT NULL" if name in table.required else ""}'
        for name, kind in table.columns.items()
    ]
    keyed = "UNIQUE" if "row_id" in table.columns.values() else "PRIMARY KEY"
    columns.append(f"{keyed} ({', '.join(map(_column, table.key))})")
    ddl = [f'CREATE TABLE IF NOT EXISTS {table.schema(dialect)}"{table.name}" ({", ".join(columns)})']
    for unique, indexes in ((True, table.unique), (False, table.indexes)):
        ddl += index_statements(table, dialect, indexes, unique)
    return ddl + (read_index_statements(table, dialect) if read_indexes else [])


def index_statements(table: Table, dialect: sql.Dialect, indexes: tuple[tuple[str, ...], ...],
                     unique: bool = False) -> list[str]:
    return [
        f"CREATE {'UNIQUE ' if unique else ''}INDEX IF NOT EXISTS {table.schema(dialect)}{index_name(table.name, index)}"
        f' ON "{table.name}" ({", ".join(map(_column, index))})'
        for index in indexes
    ]


def read_index_statements(table: Table, dialect: sql.Dialect) -> list[str]:
    return index_statements(table, dialect, table.read_indexes) + [
        f'CREATE INDEX IF NOT EXISTS {table.schema(dialect)}idx_{table.name}_{name} ON "{table.name}"'
        f' ({", ".join(map(_column, columns))}) WHERE {condition}'
        for name, columns, condition in table.partial_indexes
    ]


def make(conn: Connection, table: Table, read_indexes: bool = True) -> None:
    """Creates a table and its indexes where they are missing."""
    for statement in statements(table, sql.dialect(conn), read_indexes):
        conn.execute(statement)


def make_read_indexes(conn: Connection, tables: list[Table]) -> None:
    """Creates the indexes only reads use, where they are missing."""
    for table in tables:
        for statement in read_index_statements(table, sql.dialect(conn)):
            conn.execute(statement)


def _dropped_from_the_log(conn: Connection, tables: list[Table]) -> bool:
    """Drops the views' tables found in the log's schema where the views have one of their own (a
    ledger of an earlier release kept them there); True when there were any. Left there, they
    would be read in place of the views' (an unqualified name is looked up in the log's first)."""
    dialect = sql.dialect(conn)
    if not dialect.log_tables:
        return False
    found = {row[0] for row in conn.execute(dialect.log_tables)}
    dropped = [table.name for table in tables if not table.with_the_log and table.name in found]
    for name in dropped:
        conn.execute(f'DROP TABLE main."{name}"')
    return bool(dropped)


def columns(conn: Connection, name: str) -> list[str]:
    """The columns of a table as the database has it; none when it has no such table."""
    return [row[0] for row in conn.execute(sql.dialect(conn).columns, (name,))]


def create(conn: Connection, tables: list[Table], read_indexes: bool = True) -> bool:
    """Creates tables where missing, first dropping those of another shape, and views' tables left
    in the log's own schema by an earlier release; True when one was dropped."""
    outdated = _dropped_from_the_log(conn, tables)
    for name in RETIRED_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {name}")
    for table in tables:
        found = columns(conn, table.name)
        if found and set(found) != set(table.columns):
            conn.execute(f'DROP TABLE "{table.name}"')
            outdated = True
        make(conn, table, read_indexes)
    return outdated


def drop(conn: Connection, tables: list[Table]) -> None:
    for table in tables:
        conn.execute(f'DROP TABLE IF EXISTS "{table.name}"')


# `hash`: the hash of the event at `position`, which ties the views to their log (runner.of_the_log).
CHECKPOINTS = Table("projection_checkpoints", {"name": "text", "position": "integer", "rows_changed_at": "integer",
                                               "hash": "text"}, ("name",))

# Each usage filter's column followed by the default order (date DESC, type, uuid), so that a
# filtered page is read straight off an index instead of sorting every matching row. The indexes
# hold that order reversed (date, type DESC, uuid DESC) and are read backwards: a new report has
# the latest date, so it lands at the end of its part of an index, where SQLite fills pages before
# it splits them; at the start, as in a (date DESC, ...) index, pages split half-empty and each
# write rewrote about a fifth more pages. `type` alone gets no index: a report's items share a
# resource and a date but not a type, so an index led by type takes a page per item on every
# write; offering + type (the site agents' filter) keeps one. A resource has a few records a
# month, so its filter sorts them off the record-key index, which writes need anyway: a second
# index led by the resource cost one more random page per record written.
ORDER_KEY = ("date", "type DESC", "uuid DESC")
# The records whose policy carries them forward (reuse, zero), in the default order: a filter on
# those policies reads them alone. Through the date index it read every record to find the few
# (1.2 s at a million records, on either backend, where none matched). Most records are not
# carried, and writing them costs this index nothing.
CARRIED_POLICIES = "missing_usage_policy <> 'none'"

# A usage record's and a user usage's row id (`id`) grows as rows are added: counts kept with a
# mark grow by the rows past it (projections/usages.py, api/caching.py).
TABLES = {table.name: table for table in (
    Table("users", {"id": "integer", "username": "text", "is_staff": "integer", "is_support": "integer"}, ("id",),
          unique=(("username",),)),
    # id: the seq of the event that made the token; digest: as ledger/commands/tokens.py keeps it.
    Table("tokens", {"id": "integer", "digest": "text", "user_id": "integer", "source": "text", "created": "text",
                     "expires_at": "text", "revoked_at": "text"}, ("id",),
          indexes=(("user_id",),), unique=(("digest",),)),
    Table("customers", {"uuid": "text", "name": "text"}, ("uuid",)),
    Table("projects", {"uuid": "text", "name": "text", "customer_uuid": "text"}, ("uuid",)),
    Table("offerings", {"uuid": "text", "name": "text", "customer_uuid": "text"}, ("uuid",)),
    Table("components", {"offering_uuid": "text", "type": "text", "name": "text", "measured_unit": "text",
                         "billing_type": "text", "limit_period": "text", "limit_amount": "text"},
          ("offering_uuid", "type")),
    # A provider's lists read their pages off these, in their order (projections/provider_catalog.py).
    Table("offering_users", {"uuid": "text", "offering_uuid": "text", "username": "text", "user_id": "integer"},
          ("uuid",), read_indexes=(("username", "uuid"), ("offering_uuid", "username", "uuid"))),
    Table("resources", {"uuid": "text", "name": "text", "offering_uuid": "text", "project_uuid": "text",
                        "state": "text", "terminated_at": "text", "backend_id": "text"}, ("uuid",),
          read_indexes=(("name", "uuid"), ("offering_uuid", "name", "uuid"))),
    Table("plan_periods", {"uuid": "text", "resource_uuid": "text", "start": "text", "end": "text"}, ("uuid",),
          indexes=(("resource_uuid", "start"),)),
    Table("roles", {"username": "text", "scope": "text", "scope_uuid": "text", "role": "text"},
          ("username", "scope", "scope_uuid", "role"), indexes=(("scope", "scope_uuid"),)),
    Table("billing_periods", {"billing_period": "text", "starts_at": "text", "timezone": "text"}, ("billing_period",)),
    Table("component_usages", {
        "id": "row_id", "uuid": "text", "resource_uuid": "text", "offering_uuid": "text", "provider_uuid": "text",
        "project_uuid": "text", "customer_uuid": "text", "type": "text", "billing_period": "text",
        "plan_period_uuid": "text", "usage": "text", "description": "text", "missing_usage_policy": "text",
        "date": "text", "created": "text", "modified_by": "integer", "carried": "integer",
        # The version of the record's stream the view has folded (0 for a carried record): what a
        # report decided on this view expects its stream to be at when appended.
        "version": "integer",
    }, ("uuid",), indexes=(("resource_uuid", "type", "billing_period"),), read_indexes=(
        ORDER_KEY,
        ("offering_uuid", *ORDER_KEY),
        ("offering_uuid", "type", "date", "uuid DESC"),
        ("project_uuid", *ORDER_KEY),
        ("customer_uuid", *ORDER_KEY),
        ("provider_uuid", *ORDER_KEY),
        ("billing_period", *ORDER_KEY),
    ), partial_indexes=(("carried_policies", ORDER_KEY, CARRIED_POLICIES),)),
    # The parent's date and type are copied into a user usage (projections/user_usages.py): its
    # default order, stored reversed and read backwards as the usage records' date indexes are.
    Table("component_user_usages", {
        "id": "row_id", "uuid": "text", "component_usage_uuid": "text", "username": "text", "usage": "text",
        "user_uuid": "text", "created": "text", "modified": "text", "date": "text", "type": "text",
    }, ("uuid",), read_indexes=(("username",), ORDER_KEY), unique=(("component_usage_uuid", "username"),)),
    Table("agent_identities", {
        "uuid": "text", "offering_uuid": "text", "name": "text", "version": "text", "dependencies": "text",
        "config_file_path": "text", "config_file_content": "text", "last_restarted": "text", "created_by": "integer",
        "created": "text", "modified": "text",
    }, ("uuid",), indexes=(("offering_uuid", "name"),)),
    Table("agent_services", {"uuid": "text", "identity_uuid": "text", "name": "text", "mode": "text",
                             "created": "text", "modified": "text"}, ("uuid",), indexes=(("identity_uuid",),)),
    Table("agent_processors", {"uuid": "text", "service_uuid": "text", "name": "text", "backend_type": "text",
                               "backend_version": "text", "created": "text", "modified": "text"}, ("uuid",),
          indexes=(("service_uuid",),)),
)}

# Indexes that earlier versions of the views had: a database made by one loses them when opened.
RETIRED_INDEXES = (
    "idx_component_usages_resource_uuid_date_type_uuid",
    *(f"idx_component_usages_{prefix}date_type_uuid"
      for prefix in ("", "offering_uuid_", "project_uuid_", "customer_uuid_", "provider_uuid_", "billing_period_")),
    "idx_component_usages_offering_uuid_type_date_uuid",
)
