"""The catalog view: users, tokens, customers, projects, offerings, resources and roles."""

import hmac

from ledger.backends import Connection
from ledger.rules.access import Caller

from . import sql

NAME = "catalog"

TABLES = ("users", "tokens", "customers", "projects", "offerings", "components", "offering_users", "resources",
          "plan_periods", "roles")


def _user_defined(conn, event):
    data = event.data
    sql.replace(conn, "users", {"id": data["id"], "username": data["username"], "is_staff": int(data["is_staff"]),
                                "is_support": int(data["is_support"])}, keys=("id", "username"))
    # The catalog's token replaces the previous catalog token; issued tokens stay. The same token
    # defined again (the user changed otherwise) stays as it was, revoked if it was.
    if not data["token_digest"]:
        conn.execute("DELETE FROM tokens WHERE user_id = ? AND source = 'catalog'", (data["id"],))
    else:
        conn.execute("DELETE FROM tokens WHERE user_id = ? AND source = 'catalog' AND digest <> ?",
                     (data["id"], data["token_digest"]))
        conn.execute(
            "INSERT INTO tokens (id, digest, user_id, source, created) VALUES (?, ?, ?, 'catalog', ?)"
            " ON CONFLICT (digest) DO NOTHING",
            (event.seq, data["token_digest"], data["id"], event.occurred_at),
        )


def _token_issued(conn, event):
    data = event.data
    sql.replace(conn, "tokens", {"id": event.seq, "digest": data["token_digest"], "user_id": data["user_id"],
                                 "source": "issued", "created": event.occurred_at, "expires_at": data["expires_at"]},
                keys=("id", "digest"))


def _token_revoked(conn, event):
    data = event.data
    conn.executemany(
        "UPDATE tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        [(event.occurred_at, token_id, data["user_id"]) for token_id in data["token_ids"]],
    )


def _customer_defined(conn, event):
    data = event.data
    sql.upsert(conn, "customers", {"uuid": data["uuid"], "name": data["name"]})


def _project_defined(conn, event):
    data = event.data
    sql.upsert(conn, "projects", {key: data[key] for key in ("uuid", "name", "customer_uuid")})


def _offering_defined(conn, event):
    data = event.data
    sql.upsert(conn, "offerings", {key: data[key] for key in ("uuid", "name", "customer_uuid")})
    conn.execute("DELETE FROM components WHERE offering_uuid = ?", (data["uuid"],))
    conn.executemany(
        "INSERT INTO components (offering_uuid, type, name, measured_unit, billing_type, limit_period, limit_amount)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (data["uuid"], c["type"], c["name"], c["measured_unit"], c["billing_type"],
             c["limit_period"], c["limit_amount"])
            for c in data["components"]
        ],
    )


def _offering_user_defined(conn, event):
    data = event.data
    sql.upsert(conn, "offering_users", {key: data[key] for key in ("uuid", "offering_uuid", "username", "user_id")})


def _resource_defined(conn, event):
    data = event.data
    # terminated_at: when the resource first became Terminated (kept while it stays so), for carry-forward.
    terminated_at = event.occurred_at if data["state"] == "Terminated" else None
    conn.execute(
        "INSERT INTO resources (uuid, name, offering_uuid, project_uuid, state, terminated_at, backend_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, offering_uuid = excluded.offering_uuid,"
        " project_uuid = excluded.project_uuid, state = excluded.state, backend_id = excluded.backend_id,"
        " terminated_at = CASE WHEN excluded.state = 'Terminated' THEN COALESCE(resources.terminated_at,"
        " excluded.terminated_at) END",
        (data["uuid"], data["name"], data["offering_uuid"], data["project_uuid"], data["state"], terminated_at,
         data["backend_id"]),
    )
    conn.execute("DELETE FROM plan_periods WHERE resource_uuid = ?", (data["uuid"],))
    conn.executemany(
        'INSERT INTO plan_periods (uuid, resource_uuid, start, "end") VALUES (?, ?, ?, ?)',
        [(p["uuid"], data["uuid"], p["start"], p["end"]) for p in data["plan_periods"]],
    )


def _role_granted(conn, event):
    data = event.data
    conn.execute(
        "INSERT INTO roles (username, scope, scope_uuid, role) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (username, scope, scope_uuid, role) DO NOTHING",
        (data["username"], data["scope"], data["scope_uuid"], data["role"]),
    )


def _role_revoked(conn, event):
    data = event.data
    conn.execute(
        "DELETE FROM roles WHERE username = ? AND scope = ? AND scope_uuid = ? AND role = ?",
        (data["username"], data["scope"], data["scope_uuid"], data["role"]),
    )


HANDLERS = {
    "UserDefined": _user_defined,
    "TokenIssued": _token_issued,
    "TokenRevoked": _token_revoked,
    "CustomerDefined": _customer_defined,
    "ProjectDefined": _project_defined,
    "OfferingDefined": _offering_defined,
    "OfferingUserDefined": _offering_user_defined,
    "ResourceDefined": _resource_defined,
    "RoleGranted": _role_granted,
    "RoleRevoked": _role_revoked,
}


def token_holder(conn: Connection, digests: tuple[str, ...]) -> tuple[Caller, str | None] | None:
    """The user holding an unrevoked token kept under one of `digests`, with the scopes of their
    roles, and when the token expires (None: never); None if no such token."""
    user = conn.execute(
        "SELECT u.id, u.username, u.is_staff, u.is_support, t.digest, t.expires_at FROM tokens t"
        f" JOIN users u ON u.id = t.user_id WHERE t.digest IN ({', '.join('?' * len(digests))})"
        " AND t.revoked_at IS NULL",
        digests,
    ).fetchone()
    if user is None or not any(hmac.compare_digest(user[4], digest) for digest in digests):
        return None
    return _caller(conn, user), user[5]


def _caller(conn: Connection, user: tuple) -> Caller:
    scopes: dict[tuple[str, str], set] = {}
    for scope, role, scope_uuid in conn.execute(
        "SELECT scope, role, scope_uuid FROM roles WHERE username = ?", (user[1],)
    ):
        scopes.setdefault((scope, role), set()).add(scope_uuid)
    return Caller(
        id=user[0], username=user[1], is_staff=bool(user[2]), is_support=bool(user[3]),
        customers_owned=frozenset(scopes.get(("customer", "owner"), ())),
        customers_managed=frozenset(scopes.get(("customer", "manager"), ())),
        projects=frozenset(set().union(*(v for (s, _), v in scopes.items() if s == "project"))),
        offerings_managed=frozenset(scopes.get(("offering", "manager"), ())),
    )


TOKEN_COLUMNS = ("id", "user_id", "username", "source", "created", "expires_at", "revoked_at")


def tokens(conn: Connection, user_id: int | None = None) -> list[dict]:
    """Every token (never its digest), oldest first; only one user's with `user_id`."""
    one_user = "" if user_id is None else " WHERE t.user_id = ?"
    rows = conn.execute(
        "SELECT t.id, t.user_id, u.username, t.source, t.created, t.expires_at, t.revoked_at"
        f" FROM tokens t JOIN users u ON u.id = t.user_id{one_user} ORDER BY t.id",
        () if user_id is None else (user_id,),
    )
    return [dict(zip(TOKEN_COLUMNS, row)) for row in rows]


def _record(cursor, columns: tuple[str, ...]) -> dict | None:
    row = cursor.fetchone()
    return dict(zip(columns, row)) if row else None


def plan_periods(conn: Connection, resource_uuid: str) -> list[dict]:
    return plan_periods_of(asked_plan_periods(conn, resource_uuid))


def asked_plan_periods(conn: Connection, resource_uuid: str):
    """The cursor of a resource's plan periods, asked for and not yet read: see plan_periods_of."""
    return conn.execute('SELECT uuid, start, "end" FROM plan_periods WHERE resource_uuid = ? ORDER BY start', (resource_uuid,))


def plan_periods_of(rows) -> list[dict]:
    return [dict(zip(("uuid", "start", "end"), row)) for row in rows]


def plan_periods_by_start(rows) -> list[dict]:
    """As `plan_periods_of`, for rows in no order (a JSON aggregate's): ordered by start, as `plan_periods`."""
    return sorted(plan_periods_of(rows), key=lambda period: period["start"])


# A resource with its offering's provider customer and its project's customer: see `resource`.
RESOURCE_COLUMNS = ("r.uuid", "r.name", "r.state", "r.offering_uuid", "o.customer_uuid", "r.project_uuid", "p.customer_uuid")
RESOURCE_KEYS = ("uuid", "name", "state", "offering_uuid", "provider_uuid", "project_uuid", "customer_uuid")
RESOURCE_FROM = "FROM resources r JOIN offerings o ON o.uuid = r.offering_uuid JOIN projects p ON p.uuid = r.project_uuid"


def resource(conn: Connection, uuid: str) -> dict | None:
    """A resource with its offering's provider customer and its project's customer."""
    return _record(
        conn.execute(f"SELECT {', '.join(RESOURCE_COLUMNS)} {RESOURCE_FROM} WHERE r.uuid = ?", (uuid,)), RESOURCE_KEYS
    )


def billing_types(conn: Connection, offering_uuid: str) -> dict[str, str]:
    """Component type -> billing type, for one offering."""
    return dict(conn.execute("SELECT type, billing_type FROM components WHERE offering_uuid = ?", (offering_uuid,)))


def offering_user_of(conn: Connection, uuid: str, offering_uuid: str) -> bool:
    """Whether `uuid` is an offering user of that offering."""
    return conn.execute(
        "SELECT 1 FROM offering_users WHERE uuid = ? AND offering_uuid = ?", (uuid, offering_uuid)
    ).fetchone() is not None


def name(conn: Connection, table: str, uuid: str) -> str | None:
    """The name of a customer, project, offering or resource (`table`); None when there is none."""
    row = conn.execute(f"SELECT name FROM {table} WHERE uuid = ?", (uuid,)).fetchone()
    return row[0] if row else None


def exists(conn: Connection, table: str, uuid: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE uuid = ?", (uuid,)).fetchone() is not None


def user_id(conn: Connection, username: str) -> int | None:
    row = conn.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
    return row[0] if row else None


def username(conn: Connection, user_id: int) -> str | None:
    row = conn.execute("SELECT username FROM users WHERE id = ?", (user_id,)).fetchone()
    return row[0] if row else None
