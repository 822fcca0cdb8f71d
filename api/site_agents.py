"""Site agent registrations in Waldur's shapes: identities (list, create, retrieve, update), and the
services and processors an identity registers."""

import json

from flask import Blueprint, g, jsonify, request
from marshmallow import fields

from ledger.commands import site_agents
from ledger.commands.usage import PermissionDenied
from ledger.rules import clock
from ledger.rules.access import user_uuid
from projections import site_agents as view

from . import pagination, schemas
from .auth import authenticate
from .errors import bad_request, forbidden, not_found
from .provider import listed, provider_scopes, query_filters
from .requests import json_body
from .shapes import MOMENT, NULLABLE_TEXT, TEXT, UUID_TEXT, Field, Shape, linked, many
from .user_usages import loaded

blueprint = Blueprint("site_agents", __name__, url_prefix="/api")


class AgentDependencyRequest(schemas.Request):
    package = schemas.Text(required=True, max_length=255)
    version = schemas.Text(required=True, max_length=255)


class AgentIdentityRequest(schemas.Request):
    offering = schemas.HexUUID(required=True)
    name = schemas.Text(required=True, max_length=255)
    version = schemas.Text(allow_none=True, allow_blank=True, max_length=255)
    dependencies = schemas.ItemList(fields.Nested(AgentDependencyRequest))
    config_file_path = schemas.Text(allow_none=True, allow_blank=True, max_length=1000)
    config_file_content = schemas.Text(allow_none=True, allow_blank=True, max_length=100_000)
    last_restarted = schemas.Moment(allow_none=True)


class AgentServiceCreateRequest(schemas.Request):
    name = schemas.Text(required=True, max_length=255)
    mode = schemas.Text(allow_none=True, allow_blank=True, max_length=255)


class AgentProcessorCreateRequest(schemas.Request):
    name = schemas.Text(required=True, max_length=255)
    backend_type = schemas.Text(required=True, max_length=255)
    backend_version = schemas.Text(allow_none=True, allow_blank=True, max_length=255)


IDENTITY_REQUEST = AgentIdentityRequest()
PARTIAL_IDENTITY_REQUEST = AgentIdentityRequest(partial=True)
SERVICE_REQUEST = AgentServiceCreateRequest()
PROCESSOR_REQUEST = AgentProcessorCreateRequest()


PROCESSOR = Shape({
    "uuid": Field(UUID_TEXT), "url": linked("marketplace-site-agent-processors"), "name": Field(TEXT),
    "backend_type": Field(TEXT), "backend_version": Field(NULLABLE_TEXT),
    "created": Field(MOMENT, clock.wire), "modified": Field(MOMENT, clock.wire),
})
NESTED_SERVICE = Shape({
    "uuid": Field(UUID_TEXT), "url": linked("marketplace-site-agent-services"), "name": Field(TEXT),
    "mode": Field(NULLABLE_TEXT), "state": Field({"type": "string", "enum": ["Active", "Error", "Idle"]},
                                                 value=lambda row: "Active"),
    "created": Field(MOMENT, clock.wire), "modified": Field(MOMENT, clock.wire),
})
SERVICE = NESTED_SERVICE.extended({
    "identity": Field(UUID_TEXT, value=lambda row: row["identity_uuid"]), "identity_name": Field(TEXT),
    "processors": Field(many(PROCESSOR), value=lambda row: [
        PROCESSOR.wire(p) for p in view.processors_of(g.ledger.conn, row["uuid"])
    ]),
})
FULL_PROCESSOR = PROCESSOR.extended({
    "service": Field(UUID_TEXT, value=lambda row: row["service_uuid"]), "service_name": Field(TEXT),
})
# The dependencies are shown as they were registered: package and version.
DEPENDENCIES = many(Shape({"package": Field(TEXT), "version": Field(TEXT)}))
COMPATIBILITY = Shape({
    "status": Field({"type": "string", "enum": ["compatible", "incompatible", "unknown"]}), "message": Field(TEXT),
}).schema
IDENTITY = Shape({
    "uuid": Field(UUID_TEXT), "url": linked("marketplace-site-agent-identities"),
    "offering": Field(UUID_TEXT, value=lambda row: row["offering_uuid"]), "name": Field(TEXT),
    "version": Field(NULLABLE_TEXT), "dependencies": Field(DEPENDENCIES, json.loads),
    "config_file_path": Field(NULLABLE_TEXT), "config_file_content": Field(NULLABLE_TEXT),
    "last_restarted": Field({**MOMENT, "nullable": True}, lambda moment: clock.wire(moment) if moment else None),
    "created_by": Field({**UUID_TEXT, "nullable": True}, lambda user: user_uuid(user) if user is not None else None),
    "created": Field(MOMENT, clock.wire), "modified": Field(MOMENT, clock.wire),
    "services": Field(many(NESTED_SERVICE), value=lambda row: [
        NESTED_SERVICE.wire(s) for s in view.services_of(g.ledger.conn, row["uuid"])
    ]),
    "compatibility": Field(COMPATIBILITY, value=lambda row: {
        "status": "unknown", "message": "No minimum agent version is required.",
    }),
})


IDENTITY_DEFAULTS = {"version": None, "dependencies": [], "config_file_path": None, "config_file_content": None,
                     "last_restarted": None}


def identity_fields(given: dict, held: dict | None = None) -> dict:
    """A registration's data from a request's fields; what a PATCH leaves out keeps `held`'s values."""
    data = dict(held or IDENTITY_DEFAULTS)
    for key, value in given.items():
        if key == "last_restarted" and value is not None:
            value = clock.stored(value)
        data["offering_uuid" if key == "offering" else key] = value
    return data


def registered(write):
    """Runs a registration, answering its refusals as Waldur does; the views then hold it, for the answer."""
    try:
        registered_uuid = write()
        g.ledger.reach_views()
        return registered_uuid
    except site_agents.RegistrationNotFound:
        raise not_found() from None
    except PermissionDenied:
        raise forbidden() from None
    except site_agents.RegistrationRejected as error:
        raise bad_request(error.body) from None


def visible(caller, row: dict | None) -> dict:
    """An identity's or a service's row; 404 when there is none or the caller may not read its offering."""
    if row is None or not caller.may_read_offering(row["offering_uuid"], row["provider_uuid"]):
        raise not_found()
    return row


def visible_identity(caller, uuid: str) -> dict:
    return visible(caller, view.identity(g.ledger.conn, uuid))


@blueprint.route("/marketplace-site-agent-identities/", methods=["GET"])
def list_identities():
    caller = authenticate(g.ledger.conn)
    found = query_filters(text=("name",), uuids=("offering_uuid",))
    rows = view.identities(g.ledger.conn, provider_scopes(caller), found)
    return listed(rows, IDENTITY.wire)


@blueprint.route("/marketplace-site-agent-identities/", methods=["POST"])
def create_identity():
    caller = authenticate(g.ledger.conn)
    data = identity_fields(loaded(IDENTITY_REQUEST, json_body()))
    uuid = registered(lambda: site_agents.register_identity(g.ledger, caller, data))
    return jsonify(IDENTITY.wire(view.identity(g.ledger.conn, uuid))), 201


@blueprint.route("/marketplace-site-agent-identities/<uuid:identity_uuid>/", methods=["GET"])
def retrieve_identity(identity_uuid):
    caller = authenticate(g.ledger.conn)
    return pagination.single(IDENTITY.wire(visible_identity(caller, identity_uuid)))


@blueprint.route("/marketplace-site-agent-identities/<uuid:identity_uuid>/", methods=["PUT", "PATCH"])
def update_identity(identity_uuid):
    caller = authenticate(g.ledger.conn)
    row = visible_identity(caller, identity_uuid)
    held = {**{key: row[key] for key in ("offering_uuid", "name", "version", "config_file_path",
                                         "config_file_content", "last_restarted")},
            "dependencies": json.loads(row["dependencies"])}
    if request.method == "PUT":
        data = identity_fields(loaded(IDENTITY_REQUEST, json_body()))
    else:
        data = identity_fields(loaded(PARTIAL_IDENTITY_REQUEST, json_body()), held)
    registered(lambda: site_agents.register_identity(g.ledger, caller, data, identity_uuid))
    return jsonify(IDENTITY.wire(view.identity(g.ledger.conn, identity_uuid)))


@blueprint.route("/marketplace-site-agent-identities/<uuid:identity_uuid>/register_service/", methods=["POST"])
def register_service(identity_uuid):
    caller = authenticate(g.ledger.conn)
    visible_identity(caller, identity_uuid)
    body = loaded(SERVICE_REQUEST, json_body())
    known = view.service(g.ledger.conn, site_agents.service_uuid(identity_uuid, body["name"])) is not None
    uuid = registered(lambda: site_agents.register_service(
        g.ledger, caller, identity_uuid, body["name"], body.get("mode")
    ))
    return jsonify(SERVICE.wire(view.service(g.ledger.conn, uuid))), 200 if known else 201


def visible_service(caller, uuid: str) -> dict:
    return visible(caller, view.service(g.ledger.conn, uuid))


@blueprint.route("/marketplace-site-agent-services/<uuid:service_uuid>/", methods=["GET"])
def retrieve_service(service_uuid):
    caller = authenticate(g.ledger.conn)
    return pagination.single(SERVICE.wire(visible_service(caller, service_uuid)))


@blueprint.route("/marketplace-site-agent-services/<uuid:service_uuid>/register_processor/", methods=["POST"])
def register_processor(service_uuid):
    caller = authenticate(g.ledger.conn)
    visible_service(caller, service_uuid)
    body = loaded(PROCESSOR_REQUEST, json_body())
    known = view.processor(g.ledger.conn, site_agents.processor_uuid(service_uuid, body["name"])) is not None
    uuid = registered(lambda: site_agents.register_processor(
        g.ledger, caller, service_uuid, body["name"], body["backend_type"], body.get("backend_version")
    ))
    return jsonify(FULL_PROCESSOR.wire(view.processor(g.ledger.conn, uuid))), 200 if known else 201


@blueprint.route("/marketplace-site-agent-processors/<uuid:processor_uuid>/", methods=["GET"])
def retrieve_processor(processor_uuid):
    caller = authenticate(g.ledger.conn)
    row = view.processor(g.ledger.conn, processor_uuid)
    if row is None:
        raise not_found()
    visible_service(caller, row["service_uuid"])
    return pagination.single(FULL_PROCESSOR.wire(row))
