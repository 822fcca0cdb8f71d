"""User usages: report them on a usage record (`set_user_usage(s)`), list and retrieve them."""

from flask import Blueprint, g
from marshmallow import ValidationError

from ledger.commands import usage
from projections import catalog, usages, user_usages

from . import filters, reading, schemas
from .auth import authenticate
from .errors import bad_request, forbidden, not_found
from .requests import arrives_with_first_read, idempotency_key, json_body, restated, unwaited

blueprint = Blueprint("component_user_usages", __name__, url_prefix="/api")
USER_USAGE = schemas.UserUsageRequest()
USER_USAGES = schemas.SetUserUsagesRequest()


def writable_record(record_uuid: str) -> dict:
    """The usage record of a user usage report: 404 when the caller may not see it, then 403 when they may not write."""
    caller = authenticate(g.ledger.conn)
    record = usages.stored_record(g.ledger.conn, record_uuid, arriving=g.ledger)
    if record is None:  # or not folded yet: the request arrived without waiting for reports (usage.USER_USAGES_UNWAITED)
        g.ledger.arrive()
        record = usages.stored_record(g.ledger.conn, record_uuid)
    if record is None or not caller.may_read(
        record["offering_uuid"], record["provider_uuid"], record["project_uuid"], record["customer_uuid"]
    ):
        raise not_found()
    if not caller.may_write(record["offering_uuid"], record["provider_uuid"]):
        raise forbidden()
    return record


def loaded(schema, body) -> dict:
    try:
        return schemas.load(schema, body)
    except ValidationError as error:
        raise bad_request(error.messages) from None


def link_errors(fields: dict, offering_uuid: str) -> dict:
    """The error of an item whose `user` names no offering user of the record's offering; empty otherwise.

    Another offering's user gets the words for an unknown one, so that the answer tells nothing of it.
    """
    if "user" in fields and not catalog.offering_user_of(g.ledger.conn, fields["user"], offering_uuid):
        return {"user": [schemas.LINK_DOES_NOT_EXIST]}
    return {}


def item(fields: dict) -> usage.UserUsageItem:
    return usage.UserUsageItem(
        username=fields["username"], usage=fields["usage"], user_uuid=fields.get("user"), date=fields.get("date")
    )


def record_user_usages(command: usage.SetUserUsages, key):
    try:
        usage.set_user_usages(g.ledger, g.caller, command, key)
    except usage.RecordNotFound:
        raise not_found() from None
    except usage.PermissionDenied:
        raise forbidden() from None
    except usage.UsageRejected as error:
        raise bad_request(error.body) from None
    return "", 201


@blueprint.route("/marketplace-component-usages/<uuid:record_uuid>/set_user_usage/", methods=["POST"])
@arrives_with_first_read
@unwaited(usage.USER_USAGES_UNWAITED)
@restated
def set_user_usage(record_uuid):
    record = writable_record(record_uuid)
    key = idempotency_key(g.caller)
    fields = loaded(USER_USAGE, json_body())
    errors = link_errors(fields, record["offering_uuid"])
    if errors:
        raise bad_request(errors)
    return record_user_usages(usage.SetUserUsages(record["uuid"], [item(fields)]), key)


@blueprint.route("/marketplace-component-usages/<uuid:record_uuid>/set_user_usages/", methods=["POST"])
@arrives_with_first_read
@unwaited(usage.USER_USAGES_UNWAITED)
@restated
def set_user_usages(record_uuid):
    record = writable_record(record_uuid)
    key = idempotency_key(g.caller)
    items = loaded(USER_USAGES, json_body())["usages"]
    errors = [link_errors(fields, record["offering_uuid"]) for fields in items]
    if any(errors):
        raise bad_request({"usages": errors})
    return record_user_usages(usage.SetUserUsages(record["uuid"], [item(fields) for fields in items], bulk=True), key)


@blueprint.route("/marketplace-component-user-usages/", methods=["GET"])
@arrives_with_first_read
def list_user_usages():
    return reading.listing(user_usages, filters.user_usage_filters, schemas.COMPONENT_USER_USAGE.wire)


@blueprint.route("/marketplace-component-user-usages/<uuid:record_uuid>/", methods=["GET"])
@arrives_with_first_read
def retrieve_user_usage(record_uuid):
    return reading.retrieval(user_usages, record_uuid, schemas.COMPONENT_USER_USAGE.wire)
