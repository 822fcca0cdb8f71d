"""The site agent view: identities registered per offering, their services and their processors."""

import json

from ledger.backends import Connection

from . import sql
from .provider_catalog import filtered, provider_scope

NAME = "site_agents"
TABLES = ("agent_identities", "agent_services", "agent_processors")


def _identity_registered(conn, event):
    data = event.data
    sql.upsert(conn, "agent_identities", {
        **{key: data[key] for key in ("uuid", "offering_uuid", "name", "version", "config_file_path",
                                      "config_file_content", "last_restarted")},
        "dependencies": json.dumps(data["dependencies"]), "created_by": event.actor_id,
        "created": event.recorded_at, "modified": event.recorded_at,
    }, kept=("created", "created_by"))


def _service_registered(conn, event):
    data = event.data
    sql.upsert(conn, "agent_services", {
        **{key: data[key] for key in ("uuid", "identity_uuid", "name", "mode")},
        "created": event.recorded_at, "modified": event.recorded_at,
    }, kept=("created",))


def _processor_registered(conn, event):
    data = event.data
    sql.upsert(conn, "agent_processors", {
        **{key: data[key] for key in ("uuid", "service_uuid", "name", "backend_type", "backend_version")},
        "created": event.recorded_at, "modified": event.recorded_at,
    }, kept=("created",))


HANDLERS = {
    "AgentIdentityRegistered": _identity_registered,
    "AgentServiceRegistered": _service_registered,
    "AgentProcessorRegistered": _processor_registered,
}


def _rows(cursor) -> list[dict]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def identities(conn: Connection, scopes: dict | None, filters: dict) -> list[dict]:
    """Identities the provider-side `scopes` may read (None: all), filtered by `name` and `offering_uuid`,
    oldest first, each with its offering's provider customer."""
    where, params = filtered(*provider_scope(scopes), filters, {"name": "i.name", "offering_uuid": "i.offering_uuid"})
    return _rows(conn.execute(
        "SELECT i.*, o.customer_uuid AS provider_uuid FROM agent_identities i"
        f" JOIN offerings o ON o.uuid = i.offering_uuid WHERE {where} ORDER BY i.created, i.uuid",
        params,
    ))


def _one(conn: Connection, sql: str, uuid: str) -> dict | None:
    rows = _rows(conn.execute(sql, (uuid,)))
    return rows[0] if rows else None


def identity(conn: Connection, uuid: str) -> dict | None:
    return _one(conn, "SELECT i.*, o.customer_uuid AS provider_uuid FROM agent_identities i"
                      " JOIN offerings o ON o.uuid = i.offering_uuid WHERE i.uuid = ?", uuid)


def service(conn: Connection, uuid: str) -> dict | None:
    """A service with its identity's name and offering, and that offering's provider customer."""
    return _one(conn, "SELECT s.*, i.name AS identity_name, i.offering_uuid, o.customer_uuid AS provider_uuid"
                      " FROM agent_services s JOIN agent_identities i ON i.uuid = s.identity_uuid"
                      " JOIN offerings o ON o.uuid = i.offering_uuid WHERE s.uuid = ?", uuid)


def processor(conn: Connection, uuid: str) -> dict | None:
    return _one(conn, "SELECT p.*, s.name AS service_name FROM agent_processors p"
                      " JOIN agent_services s ON s.uuid = p.service_uuid WHERE p.uuid = ?", uuid)


def services_of(conn: Connection, identity_uuid: str) -> list[dict]:
    return _rows(conn.execute(
        "SELECT * FROM agent_services WHERE identity_uuid = ? ORDER BY created, uuid", (identity_uuid,)
    ))


def processors_of(conn: Connection, service_uuid: str) -> list[dict]:
    return _rows(conn.execute(
        "SELECT * FROM agent_processors WHERE service_uuid = ? ORDER BY created, uuid", (service_uuid,)
    ))

