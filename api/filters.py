"""Query parameters of the list endpoints: filters and ordering, parsed or refused with a 400."""

import datetime as dt
import uuid
from urllib.parse import urlparse

from flask import request

from ledger.log.events import POLICIES

from .errors import bad_request

UUID_FILTERS = ("resource_uuid", "offering_uuid", "project_uuid", "customer_uuid")
DATE_FILTERS = ("billing_period", "date_after", "date_before")


def hex_uuid(text: str) -> str | None:
    try:
        return uuid.UUID(text.strip()).hex
    except ValueError:
        return None


def text_filter(name: str, errors: dict) -> str | None:
    """A text parameter; refused, as Django's forms refuse it, when it holds a null character."""
    value = request.args[name]
    if "\x00" in value:
        errors[name] = ["Null characters are not allowed."]
        return None
    return value


def usage_filters() -> dict:
    """Filters on usage records from this request's query string, by the view's filter names."""
    errors: dict = {}
    return checked(record_filters(errors), errors)


def checked(filters: dict, errors: dict) -> dict:
    """The filters, or a 400 naming every bad parameter."""
    if errors:
        raise bad_request(errors)
    return filters


def record_filters(errors: dict) -> dict:
    """The query's filters on usage records; problems are added to `errors`, by parameter name."""
    args, filters = request.args, {}
    for name in UUID_FILTERS:
        if name in args:
            filters[name] = hex_uuid(args[name]) or errors.setdefault(name, ["Enter a valid UUID."])
    if "resource" in args:
        try:
            path = [part for part in urlparse(args["resource"]).path.split("/") if part]
        except ValueError:  # not a URL at all, e.g. an unclosed IPv6 host
            path = []
        value = hex_uuid(path[-1]) if path else None
        filters["resource_uuid"] = value or errors.setdefault("resource", ["Enter a valid UUID."])
    if args.get("type"):
        filters["type"] = text_filter("type", errors)
    for name in DATE_FILTERS:
        if name in args:
            try:
                filters[name] = dt.date.fromisoformat(args[name])
            except ValueError:
                errors[name] = ["Enter a valid date."]
    if "billing_period" in filters:
        filters["billing_period"] = filters["billing_period"].isoformat()
    for name in ("billing_period_month", "billing_period_year"):
        if name in args:
            try:
                filters[name] = int(float(args[name]))
            except (ValueError, OverflowError):
                errors[name] = ["Enter a number."]
    policies = args.getlist("missing_usage_policy")
    if policies:
        unknown = [p for p in policies if p not in POLICIES]
        if unknown:
            errors["missing_usage_policy"] = [
                f"Select a valid choice. {unknown[0]} is not one of the available choices."
            ]
        filters["missing_usage_policy"] = policies
    return filters


def user_usage_filters() -> dict:
    """Filters on user usage records: their usage record's, plus `username` and that record's billing period."""
    args, errors = request.args, {}
    filters = record_filters(errors)
    if args.get("username"):
        filters["username"] = text_filter("username", errors)
    # Waldur's name (what its clients send), and the spelling without the double underscore.
    for name in ("component_usage__billing_period", "component_usage_billing_period"):
        if name in args:
            try:
                filters["component_usage_billing_period"] = dt.date.fromisoformat(args[name]).isoformat()
            except ValueError:
                errors[name] = ["Enter a valid date."]
    return checked(filters, errors)


def ordering(allowed: tuple[str, ...]) -> list[str]:
    """The last `o` parameter as a list of keys (comma-separated, each with optional '-')."""
    values = request.args.getlist("o")
    if not values:
        return []
    keys = [key.strip() for key in values[-1].split(",") if key.strip()]
    unknown = [key for key in keys if key.lstrip("-") not in allowed]
    if unknown:
        raise bad_request({"o": [f"Select a valid choice. {unknown[0]} is not one of the available choices."]})
    return keys
