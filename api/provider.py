"""What a service provider reads in Waldur's shapes: its offerings, itself, its resources and its offering users.

Staff and support read everything; others read what they see from the provider side (owners and
managers of the offering's customer, managers of the offering); an outsider gets an empty list or 404.
"""

import re
import uuid as uuids
from decimal import Decimal

from flask import Blueprint, g, request

from ledger.access import Caller, user_uuid
from ledger.events import STATES
from projections import provider_catalog

from . import links, pagination
from .auth import authenticate
from .errors import bad_request, not_found
from .filters import hex_uuid

blueprint = Blueprint("provider", __name__, url_prefix="/api")
PROVIDER_NAMESPACE = uuids.UUID("8d3b7e0a-6c2f-4f1a-b5e4-70726f766964")
BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def provider_scopes(caller: Caller) -> dict | None:
    """What the caller reads from the provider side; None (everything) for staff and support."""
    if caller.sees_everything:
        return None
    return {"provider_uuid": sorted(caller.customers_owned | caller.customers_managed),
            "offering_uuid": sorted(caller.offerings_managed)}


def query_filters(text=(), uuids=(), choices: dict | None = None, booleans=()) -> dict:
    """The query's filters, each repeatable (any of its values): exact `text`, `uuids`, values among
    `choices[name]`, and `booleans`; blank values are ignored; a 400 names every bad one."""
    args, found, errors = request.args, {}, {}
    for name in (*text, *uuids, *(choices or {}), *booleans):
        values = [value for value in args.getlist(name) if value.strip()]
        if not values:
            continue
        if name in uuids:
            values = [hex_uuid(value) for value in values]
            if None in values:
                errors[name] = ["Enter a valid UUID."]
        elif name in booleans:
            values = [BOOLEANS.get(value.lower()) for value in values]
            if None in values:
                errors[name] = ["Enter a valid boolean."]
        elif name in (choices or {}):
            unknown = [value for value in values if value not in choices[name]]
            if unknown:
                errors[name] = [f"Select a valid choice. {unknown[0]} is not one of the available choices."]
        found[name] = values
    if errors:
        raise bad_request(errors)
    return found


def listed(rows: list[dict], wire) -> object:
    """A paginated list response of catalog-sized `rows`, each shown by `wire`."""
    return pagination.paginated(lambda limit, offset: [wire(row) for row in rows[offset:offset + limit]], len(rows))


def retrieved(rows: list[dict], wire) -> object:
    if not rows:
        raise not_found()
    return pagination.single(wire(rows[0]))


def link(kind: str, uuid: str) -> str:
    """An object's `url`, under LEDGER_BASE_URL when set (api/links.py), never under a Host a client sent."""
    return f"{links.root()}api/{kind}/{uuid}/"


def slug(name: str) -> str:
    """A Waldur-style slug of a name: lowercase letters and digits joined by hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def limit_amount(text: str | None) -> int | float | None:
    """A component's limit as Waldur gives it: a whole number when it is one."""
    if text is None:
        return None
    amount = Decimal(text)
    return int(amount) if amount == amount.to_integral_value() else float(amount)


def service_provider_uuid(customer_uuid: str) -> str:
    """The UUID of a customer's service provider record, derived: the catalog has customers, Waldur both."""
    return uuids.uuid5(PROVIDER_NAMESPACE, customer_uuid).hex


def wire_offering(row: dict) -> dict:
    return {
        "uuid": row["uuid"], "url": link("marketplace-provider-offerings", row["uuid"]), "name": row["name"],
        "customer_uuid": row["customer_uuid"], "customer_name": row["customer_name"],
        "components": [
            {**component, "limit_amount": limit_amount(component["limit_amount"])}
            for component in provider_catalog.components(g.ledger.conn, row["uuid"])
        ],
        "partitions": [], "plugin_options": {},
    }


def wire_service_provider(row: dict) -> dict:
    uuid = service_provider_uuid(row["customer_uuid"])
    return {"uuid": uuid, "url": link("marketplace-service-providers", uuid), **row}


def wire_resource(row: dict) -> dict:
    return {
        "uuid": row["uuid"], "url": link("marketplace-provider-resources", row["uuid"]), "name": row["name"],
        "slug": slug(row["name"]), "backend_id": row["backend_id"], "state": row["state"],
        "offering": link("marketplace-provider-offerings", row["offering_uuid"]),
        "offering_uuid": row["offering_uuid"], "offering_name": row["offering_name"],
        "project_uuid": row["project_uuid"], "project_name": row["project_name"], "project_slug": slug(row["project_name"]),
        "customer_uuid": row["customer_uuid"], "customer_name": row["customer_name"],
        "customer_slug": slug(row["customer_name"]),
        # The catalog knows none of these; Waldur's empty values keep the agent's parsing whole.
        "limits": {}, "attributes": {}, "backend_metadata": {}, "offering_plugin_options": {}, "offering_backend_id": "",
    }


def wire_offering_user(row: dict) -> dict:
    user = {} if row["user_id"] is None else {"user_uuid": user_uuid(row["user_id"]), "user_username": row["user_username"]}
    # Without a user of the catalog there is no user key at all: Waldur's clients parse a null as a UUID.
    return {
        "uuid": row["uuid"], "url": link("marketplace-offering-users", row["uuid"]), "username": row["username"],
        "offering_uuid": row["offering_uuid"], "offering_name": row["offering_name"], **user,
        "state": "OK", "is_restricted": False,
    }


def scoped(query, filters: dict) -> list[dict]:
    caller = authenticate(g.ledger.conn)
    return query(g.ledger.conn, provider_scopes(caller), filters)


@blueprint.route("/marketplace-provider-offerings/", methods=["GET"])
def list_offerings():
    filters = query_filters(uuids=("uuid", "customer_uuid"))
    return listed(scoped(provider_catalog.offerings, filters), wire_offering)


@blueprint.route("/marketplace-provider-offerings/<uuid:offering_uuid>/", methods=["GET"])
def retrieve_offering(offering_uuid):
    return retrieved(scoped(provider_catalog.offerings, {"uuid": offering_uuid}), wire_offering)


@blueprint.route("/marketplace-service-providers/", methods=["GET"])
def list_service_providers():
    filters = query_filters(uuids=("customer_uuid",))
    return listed(scoped(provider_catalog.service_providers, filters), wire_service_provider)


@blueprint.route("/marketplace-service-providers/<uuid:provider_uuid>/", methods=["GET"])
def retrieve_service_provider(provider_uuid):
    rows = [row for row in scoped(provider_catalog.service_providers, {})
            if service_provider_uuid(row["customer_uuid"]) == provider_uuid]
    return retrieved(rows, wire_service_provider)


@blueprint.route("/marketplace-provider-resources/", methods=["GET"])
def list_resources():
    filters = query_filters(text=("backend_id",), uuids=("offering_uuid", "project_uuid", "customer_uuid"),
                            choices={"state": STATES})
    return listed(scoped(provider_catalog.resources, filters), wire_resource)


@blueprint.route("/marketplace-provider-resources/<uuid:resource_uuid>/", methods=["GET"])
def retrieve_resource(resource_uuid):
    return retrieved(scoped(provider_catalog.resources, {"uuid": resource_uuid}), wire_resource)


@blueprint.route("/marketplace-offering-users/", methods=["GET"])
def list_offering_users():
    filters = query_filters(uuids=("offering_uuid",), booleans=("is_restricted",))
    rows = scoped(provider_catalog.offering_users, filters)
    if False not in filters.get("is_restricted", [False]):
        rows = []  # no offering user of the catalog is restricted
    return listed(rows, wire_offering_user)


@blueprint.route("/marketplace-offering-users/<uuid:offering_user_uuid>/", methods=["GET"])
def retrieve_offering_user(offering_user_uuid):
    return retrieved(scoped(provider_catalog.offering_users, {"uuid": offering_user_uuid}), wire_offering_user)
