"""/api/usage-totals/: a billing month's total usage per customer, project, offering or resource,
among the records the caller may read (the figures of `ledger report`)."""

from flask import Blueprint, g, jsonify, request

from ledger.rules import clock
from projections import reports

from .auth import authenticate
from .errors import bad_request
from .reading import read_scopes
from .shapes import INTEGER, TEXT, Field, Shape

# Documented only: the report makes its rows whole (tests/test_response_shapes.py holds them to it).
USAGE_TOTAL = Shape({
    "period": Field({**TEXT, "pattern": "^[0-9]{4}-[0-9]{2}$"}), "type": Field(TEXT), "measured_unit": Field(TEXT),
    "usage": Field({**TEXT, "description": "the exact sum, two decimals"}),
    "records": Field({**INTEGER, "description": "how many usage records the total adds up"}),
}, description="One group's total of one component type in the month; `<by>_uuid` and `<by>_name` are named"
               " after `by`, e.g. `customer_uuid` and `customer_name`.", more=TEXT)

blueprint = Blueprint("usage_totals", __name__, url_prefix="/api/usage-totals")


@blueprint.route("/", methods=["GET"])
def usage_totals():
    caller = authenticate(g.ledger.conn)
    period, by = report_query()
    return jsonify(reports.period_totals(g.ledger.conn, read_scopes(caller), period, by))


def report_query():
    """`period` (YYYY-MM, default this month) and `by` (default customer) of this request, or a 400 naming each bad one."""
    errors = {}
    period, by = request.args.get("period"), request.args.get("by", "customer")
    try:
        month = clock.parse_month(period) if period else clock.billing_period(clock.now())
    except ValueError:
        errors["period"] = ["Enter a valid month as YYYY-MM."]
    if by not in reports.GROUPS:
        errors["by"] = [f'"{by}" is not a valid choice.']
    if errors:
        raise bad_request(errors)
    return month, by
