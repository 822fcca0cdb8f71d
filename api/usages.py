"""/api/marketplace-component-usages/: report usage, list and retrieve usage records, and the events behind one."""

from flask import Blueprint, g, jsonify
from marshmallow import ValidationError

from ledger import history
from ledger.commands import usage
from ledger.rules import clock
from projections import usages

from . import filters, reading, schemas
from .auth import authenticate
from .errors import bad_request, forbidden, not_found
from .requests import arrives_with_first_read, idempotency_key, json_body, restated, unwaited
from .shapes import INTEGER, MOMENT, OBJECT, TEXT, UUID_TEXT, Field, Shape

# One event of a record's history, its data as it was hashed.
USAGE_EVENT = Shape({
    "seq": Field(INTEGER), "event_id": Field(UUID_TEXT), "type": Field(TEXT),
    "occurred_at": Field(MOMENT, clock.wire), "recorded_at": Field(MOMENT, clock.wire),
    "actor_id": Field({**INTEGER, "nullable": True}), "data": Field({**OBJECT, "additionalProperties": True}),
    "hash": Field({**TEXT, "pattern": "^[0-9a-f]{64}$"}),
})

blueprint = Blueprint("component_usages", __name__, url_prefix="/api/marketplace-component-usages")


@blueprint.route("/set_usage/", methods=["POST"])
@arrives_with_first_read
@unwaited(usage.SET_USAGE_UNWAITED)
@restated
def set_usage():
    caller = authenticate(g.ledger.conn)
    key = idempotency_key(caller)
    body = json_body()
    try:
        fields = schemas.load_set_usage(body)
    except ValidationError as error:
        raise bad_request(error.messages) from None
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
        usage.set_usage(g.ledger, caller, command, key)
    except usage.TargetUnreadable as error:
        raise bad_request({name: [f"Object with uuid={body[name]} does not exist."] for name in error.fields}) from None
    except usage.UsageRejected as error:
        raise bad_request(error.body) from None
    except usage.PermissionDenied:
        raise forbidden() from None
    return "", 201


@blueprint.route("/", methods=["GET"])
@arrives_with_first_read
def list_usages():
    return reading.listing(usages, filters.usage_filters, schemas.COMPONENT_USAGE.wire)


@blueprint.route("/<uuid:record_uuid>/", methods=["GET"])
@arrives_with_first_read
def retrieve_usage(record_uuid):
    return reading.retrieval(usages, record_uuid, schemas.COMPONENT_USAGE.wire)


@blueprint.route("/<uuid:record_uuid>/history/", methods=["GET"])
def usage_history(record_uuid):
    """The events behind one record, oldest first, with their data as hashed; 404 unless the caller may read it."""
    caller = authenticate(g.ledger.conn)
    rows = usages.records(g.ledger.conn, reading.read_scopes(caller), {"uuid": record_uuid}, [], 1)
    if not rows:
        raise not_found()
    return jsonify([USAGE_EVENT.wire(vars(event)) for event in history.record_events(g.ledger.store, rows[0])])
