"""The catalog as a service provider reads it: its offerings, itself, its resources and offering users.

Queries over the catalog view; what a caller may read is given as provider-side scopes: the customers
they own or manage (`provider_uuid`) and the offerings they manage (`offering_uuid`); None reads all.
"""

from ledger.backends import Connection

from . import sql


def provider_scope(scopes: dict | None, offering: str = "o") -> tuple[str, list]:
    """SQL over an offerings table aliased `offering` for what provider-side `scopes` may read."""
    if scopes is None:
        return "TRUE", []
    providers, offerings = scopes["provider_uuid"], scopes["offering_uuid"]
    return (
        f"({offering}.customer_uuid IN ({', '.join('?' * len(providers)) or 'NULL'})"
        f" OR {offering}.uuid IN ({', '.join('?' * len(offerings)) or 'NULL'}))",
        [*providers, *offerings],
    )


def _rows(cursor) -> list[dict]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def filtered(where: str, params: list, filters: dict, columns: dict[str, str]) -> tuple[str, list]:
    """`where` narrowed by each filter named in `columns` (filter -> SQL column); a list value is any of it."""
    for name, column in columns.items():
        if name not in filters:
            continue
        values = filters[name] if isinstance(filters[name], list) else [filters[name]]
        where += f" AND {column} IN ({', '.join('?' * len(values))})"
        params = [*params, *values]
    return where, params


def offering(conn: Connection, uuid: str) -> dict | None:
    """An offering's uuid and its provider customer's (`provider_uuid`)."""
    row = conn.execute("SELECT uuid, customer_uuid FROM offerings WHERE uuid = ?", (uuid,)).fetchone()
    return {"uuid": row[0], "provider_uuid": row[1]} if row else None


def offerings(conn: Connection, scopes: dict | None, filters: dict) -> list[dict]:
    """Offerings with their customer's name, by name then uuid; filters `uuid`, `customer_uuid`."""
    where, params = filtered(*provider_scope(scopes), filters, {"uuid": "o.uuid", "customer_uuid": "o.customer_uuid"})
    return _rows(conn.execute(
        "SELECT o.uuid, o.name, o.customer_uuid, cu.name AS customer_name FROM offerings o"
        f" JOIN customers cu ON cu.uuid = o.customer_uuid WHERE {where} ORDER BY o.name, o.uuid",
        params,
    ))


def components(conn: Connection, offering_uuid: str) -> list[dict]:
    return _rows(conn.execute(
        "SELECT type, name, measured_unit, billing_type, limit_period, limit_amount FROM components"
        " WHERE offering_uuid = ? ORDER BY type", (offering_uuid,),
    ))


def service_providers(conn: Connection, scopes: dict | None, filters: dict) -> list[dict]:
    """Customers that provide an offering the caller may read, by name then uuid; filter `customer_uuid`."""
    where, params = filtered(*provider_scope(scopes), filters, {"customer_uuid": "o.customer_uuid"})
    return _rows(conn.execute(
        "SELECT DISTINCT cu.uuid AS customer_uuid, cu.name AS customer_name FROM offerings o"
        f" JOIN customers cu ON cu.uuid = o.customer_uuid WHERE {where} ORDER BY cu.name, cu.uuid",
        params,
    ))


RESOURCE_FILTERS = {
    "uuid": "r.uuid", "offering_uuid": "r.offering_uuid", "state": "r.state", "project_uuid": "r.project_uuid",
    "customer_uuid": "p.customer_uuid", "backend_id": "r.backend_id",
}
RESOURCES_FROM = (
    "FROM resources r JOIN offerings o ON o.uuid = r.offering_uuid JOIN projects p ON p.uuid = r.project_uuid"
    " JOIN customers cu ON cu.uuid = p.customer_uuid"
)
OFFERING_USERS_FROM = (
    "FROM offering_users ou JOIN offerings o ON o.uuid = ou.offering_uuid LEFT JOIN users u ON u.id = ou.user_id"
)
OFFERING_USER_FILTERS = {"uuid": "ou.uuid", "offering_uuid": "ou.offering_uuid"}


def _page(page: tuple[int, int] | None) -> str:
    """The LIMIT of a page given as (limit, offset); none for every row. A provider's resources and
    offering users grow with its users: a page is read off an index, not sliced from all of them."""
    return f" {sql.limit(*page)}" if page else ""


def resources(conn: Connection, scopes: dict | None, filters: dict, page: tuple[int, int] | None = None) -> list[dict]:
    """Resources of offerings the caller may read, with their offering, project and the project's
    customer, by name then uuid; filters as RESOURCE_FILTERS names them."""
    where, params = _resources_where(scopes, filters)
    return _rows(conn.execute(
        "SELECT r.uuid, r.name, r.backend_id, r.state, r.offering_uuid, o.name AS offering_name,"
        " r.project_uuid, p.name AS project_name, p.customer_uuid, cu.name AS customer_name"
        f" {RESOURCES_FROM} WHERE {where} ORDER BY r.name, r.uuid{_page(page)}",
        params,
    ))


def count_resources(conn: Connection, scopes: dict | None, filters: dict) -> int:
    where, params = _resources_where(scopes, filters)
    return conn.execute(f"SELECT COUNT(*) {RESOURCES_FROM} WHERE {where}", params).fetchone()[0]


def _resources_where(scopes: dict | None, filters: dict) -> tuple[str, list]:
    return filtered(*provider_scope(scopes), filters, RESOURCE_FILTERS)


def offering_users(conn: Connection, scopes: dict | None, filters: dict,
                   page: tuple[int, int] | None = None) -> list[dict]:
    """Offering users of offerings the caller may read, by username then uuid; filters `uuid`, `offering_uuid`."""
    where, params = _offering_users_where(scopes, filters)
    return _rows(conn.execute(
        "SELECT ou.uuid, ou.username, ou.offering_uuid, o.name AS offering_name, ou.user_id,"
        f" u.username AS user_username {OFFERING_USERS_FROM} WHERE {where} ORDER BY ou.username, ou.uuid{_page(page)}",
        params,
    ))


def count_offering_users(conn: Connection, scopes: dict | None, filters: dict) -> int:
    where, params = _offering_users_where(scopes, filters)
    return conn.execute(f"SELECT COUNT(*) {OFFERING_USERS_FROM} WHERE {where}", params).fetchone()[0]


def _offering_users_where(scopes: dict | None, filters: dict) -> tuple[str, list]:
    return filtered(*provider_scope(scopes), filters, OFFERING_USER_FILTERS)
