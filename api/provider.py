"""What a service provider reads in Waldur's shapes: its offerings, itself, its resources and its offering users.

Staff and support read everything; others read what they see from the provider side (owners and
managers of the offering's customer, managers of the offering); an outsider gets an empty list or 404.
"""

import re
import uuid as uuids
from decimal import Decimal

from flask import Blueprint, g, request

from ledger.log.events import STATES
from ledger.rules.access import Caller, user_uuid
from projections import provider_catalog

from . import links, pagination
from .auth import authenticate
from .caching import ViewCache
from .errors import bad_request, not_found
from .filters import hex_uuid
from .shapes import BOOLEAN, LINK, NULLABLE_TEXT, OBJECT, TEXT, UUID_TEXT, Field, Shape, linked, many

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
    """A paginated list response of catalog-sized `rows` (a provider's offerings, say), each shown by `wire`."""
    return pagination.paginated(lambda limit, offset: [wire(row) for row in rows[offset:offset + limit]], lambda: len(rows))


COUNTS = ViewCache()  # see `paged`


def paged(query, count, filters: dict, wire) -> object:
    """A paginated list response of the rows `query` reads a page of (a provider's resources, which
    grow with its users), each shown by `wire`. The count is kept until the catalog's rows change."""
    conn, scopes = g.ledger.conn, callers_scopes()
    return pagination.paginated(
        lambda limit, offset: [wire(row) for row in query(conn, scopes, filters, (limit, offset))],
        lambda: COUNTS.get((count.__name__, repr(scopes), repr(sorted(filters.items()))),
                           lambda: count(conn, scopes, filters), rows_only=True),
    )


def retrieved(rows: list[dict], wire) -> object:
    if not rows:
        raise not_found()
    return pagination.single(wire(rows[0]))


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


COMPONENT = Shape({
    "type": Field(TEXT), "name": Field(TEXT), "measured_unit": Field(TEXT), "billing_type": Field(TEXT),
    "limit_period": Field(NULLABLE_TEXT), "limit_amount": Field({"type": "number", "nullable": True}, limit_amount),
})
OFFERING = Shape({
    "uuid": Field(UUID_TEXT), "url": linked("marketplace-provider-offerings"), "name": Field(TEXT),
    "customer_uuid": Field(UUID_TEXT), "customer_name": Field(TEXT),
    "components": Field(many(COMPONENT), value=lambda row: [
        COMPONENT.wire(component) for component in provider_catalog.components(g.ledger.conn, row["uuid"])
    ]),
    "partitions": Field({"type": "array", "items": {}}, value=lambda row: []),
    "plugin_options": Field(OBJECT, value=lambda row: {}),
})
SERVICE_PROVIDER = Shape({
    "uuid": Field(UUID_TEXT, value=lambda row: service_provider_uuid(row["customer_uuid"])),
    "url": Field(LINK, value=lambda row: links.to("marketplace-service-providers",
                                                  service_provider_uuid(row["customer_uuid"]))),
    "customer_uuid": Field(UUID_TEXT), "customer_name": Field(TEXT),
})
RESOURCE = Shape({
    "uuid": Field(UUID_TEXT), "url": linked("marketplace-provider-resources"), "name": Field(TEXT),
    "slug": Field(TEXT, value=lambda row: slug(row["name"])), "backend_id": Field(TEXT),
    "state": Field({"type": "string", "enum": list(STATES)}),
    "offering": linked("marketplace-provider-offerings", "offering_uuid"),
    "offering_uuid": Field(UUID_TEXT), "offering_name": Field(TEXT), "project_uuid": Field(UUID_TEXT),
    "project_name": Field(TEXT), "project_slug": Field(TEXT, value=lambda row: slug(row["project_name"])),
    "customer_uuid": Field(UUID_TEXT), "customer_name": Field(TEXT),
    "customer_slug": Field(TEXT, value=lambda row: slug(row["customer_name"])),
    # The catalog knows none of these; Waldur's empty values keep the agent's parsing whole.
    "limits": Field(OBJECT, value=lambda row: {}), "attributes": Field(OBJECT, value=lambda row: {}),
    "backend_metadata": Field(OBJECT, value=lambda row: {}),
    "offering_plugin_options": Field(OBJECT, value=lambda row: {}),
    "offering_backend_id": Field(TEXT, value=lambda row: ""),
})
OFFERING_USER = Shape({
    "uuid": Field(UUID_TEXT), "url": linked("marketplace-offering-users"), "username": Field(TEXT),
    "offering_uuid": Field(UUID_TEXT), "offering_name": Field(TEXT),
    "user_uuid": Field(UUID_TEXT, value=lambda row: user_uuid(row["user_id"]) if row["user_id"] is not None else None),
    "user_username": Field(TEXT), "state": Field(TEXT, value=lambda row: "OK"),
    "is_restricted": Field(BOOLEAN, value=lambda row: False),
})


def wire_offering_user(row: dict) -> dict:
    shown = OFFERING_USER.wire(row)
    if row["user_id"] is None:  # no user key at all: Waldur's clients parse a null as a UUID
        del shown["user_uuid"], shown["user_username"]
    return shown


def callers_scopes() -> dict | None:
    """The provider-side scopes of this request's caller (401 without a known token)."""
    return provider_scopes(authenticate(g.ledger.conn))


def scoped(query, filters: dict) -> list[dict]:
    return query(g.ledger.conn, callers_scopes(), filters)


@blueprint.route("/marketplace-provider-offerings/", methods=["GET"])
def list_offerings():
    filters = query_filters(uuids=("uuid", "customer_uuid"))
    return listed(scoped(provider_catalog.offerings, filters), OFFERING.wire)


@blueprint.route("/marketplace-provider-offerings/<uuid:offering_uuid>/", methods=["GET"])
def retrieve_offering(offering_uuid):
    return retrieved(scoped(provider_catalog.offerings, {"uuid": offering_uuid}), OFFERING.wire)


@blueprint.route("/marketplace-service-providers/", methods=["GET"])
def list_service_providers():
    filters = query_filters(uuids=("customer_uuid",))
    return listed(scoped(provider_catalog.service_providers, filters), SERVICE_PROVIDER.wire)


@blueprint.route("/marketplace-service-providers/<uuid:provider_uuid>/", methods=["GET"])
def retrieve_service_provider(provider_uuid):
    rows = [row for row in scoped(provider_catalog.service_providers, {})
            if service_provider_uuid(row["customer_uuid"]) == provider_uuid]
    return retrieved(rows, SERVICE_PROVIDER.wire)


@blueprint.route("/marketplace-provider-resources/", methods=["GET"])
def list_resources():
    filters = query_filters(text=("backend_id",), uuids=("offering_uuid", "project_uuid", "customer_uuid"),
                            choices={"state": STATES})
    return paged(provider_catalog.resources, provider_catalog.count_resources, filters, RESOURCE.wire)


@blueprint.route("/marketplace-provider-resources/<uuid:resource_uuid>/", methods=["GET"])
def retrieve_resource(resource_uuid):
    return retrieved(scoped(provider_catalog.resources, {"uuid": resource_uuid}), RESOURCE.wire)


@blueprint.route("/marketplace-offering-users/", methods=["GET"])
def list_offering_users():
    filters = query_filters(uuids=("offering_uuid",), booleans=("is_restricted",))
    if False not in filters.pop("is_restricted", [False]):
        authenticate(g.ledger.conn)  # an empty list is still only for callers
        return listed([], wire_offering_user)  # no offering user of the catalog is restricted
    return paged(provider_catalog.offering_users, provider_catalog.count_offering_users, filters, wire_offering_user)


@blueprint.route("/marketplace-offering-users/<uuid:offering_user_uuid>/", methods=["GET"])
def retrieve_offering_user(offering_user_uuid):
    return retrieved(scoped(provider_catalog.offering_users, {"uuid": offering_user_uuid}), wire_offering_user)
