"""/api/marketplace-component-usages/: report usage, list and retrieve usage records."""

import json

from flask import Blueprint, g, request
from marshmallow import ValidationError

from ledger import usage
from projections import catalog, usages

from . import filters, pagination, schemas
from .auth import authenticate
from .errors import bad_request, forbidden, not_found

blueprint = Blueprint("component_usages", __name__, url_prefix="/api/marketplace-component-usages")


def json_body():
    """The request's JSON body (an empty body is an empty object); 400 in DRF's words when it is not JSON."""
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as error:
        raise bad_request({"detail": f"JSON parse error - {error}"}) from None


@blueprint.route("/set_usage/", methods=["POST"])
def set_usage():
    caller = authenticate(g.ledger.conn)
    body = json_body()
    try:
        fields = schemas.load(schemas.SetUsageRequest(), body)
    except ValidationError as error:
        errors = error.messages
        fields = None
    else:
        errors = {}
    for name, table in (("plan_period", "plan_periods"), ("resource", "resources")):
        value = fields.get(name) if fields else None
        if value and not catalog.exists(g.ledger.conn, table, value):
            errors[name] = [f"Object with uuid={body[name]} does not exist."]
    if errors:
        raise bad_request(errors)
    command = usage.SetUsage(
        items=[
            usage.UsageItem(
                type=item["type"], amount=item["amount"], description=item["description"],
                missing_usage_policy=item.get("missing_usage_policy")
                or ("reuse" if item.get("recurring") else "none"),
            )
            for item in fields["usages"]
        ],
        resource_uuid=fields.get("resource"),
        plan_period_uuid=fields.get("plan_period"),
        date=fields.get("date"),
    )
    try:
        usage.set_usage(g.ledger, caller, command)
    except usage.UsageRejected as error:
        raise bad_request(error.body) from None
    except usage.PermissionDenied:
        raise forbidden() from None
    return "", 201


ORDERING = tuple(usages.ORDER_COLUMNS)


@blueprint.route("/", methods=["GET"])
def list_usages():
    caller = authenticate(g.ledger.conn)
    found = filters.usage_filters()
    order = filters.ordering(ORDERING)
    scopes = None if caller.sees_everything else caller.visible_scopes()
    conn = g.ledger.conn

    def fetch(limit, offset):
        return [schemas.usage_record(row) for row in usages.records(conn, scopes, found, order, limit, offset)]

    return pagination.paginated(fetch, usages.count(conn, scopes, found))


@blueprint.route("/<uuid:record_uuid>/", methods=["GET"])
def retrieve_usage(record_uuid):
    caller = authenticate(g.ledger.conn)
    scopes = None if caller.sees_everything else caller.visible_scopes()
    rows = usages.records(g.ledger.conn, scopes, {"uuid": record_uuid}, [], 1)
    if not rows:
        raise not_found()
    return pagination.single(schemas.usage_record(rows[0]))
