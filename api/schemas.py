"""Request and response schemas, with Django REST framework's error messages and shapes."""

import re
import uuid
from decimal import Decimal, InvalidOperation
from urllib.parse import urlparse

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validates

from ledger.log.events import POLICIES
from ledger.rules import clock

from . import links
from .shapes import AMOUNT, BOOLEAN, DATE, INTEGER, LINK, MOMENT, TEXT, UUID_TEXT, Field, Shape

REQUIRED = {"required": "This field is required.", "null": "This field may not be null."}
DATETIME_FORMAT_ERROR = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)


class Text(fields.String):
    """A string as DRF's CharField takes it: numbers are accepted as text, blank is refused unless allowed."""

    default_error_messages = {**REQUIRED, "invalid": "Not a valid string.", "blank": "This field may not be blank."}

    def __init__(self, *, max_length: int | None = None, allow_blank: bool = False, **kwargs):
        if max_length is not None:  # for the OpenAPI document
            kwargs["metadata"] = {"maxLength": max_length, **kwargs.get("metadata", {})}
        super().__init__(**kwargs)
        self.max_length, self.allow_blank = max_length, allow_blank

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.make_error("invalid")
        text = str(value).strip()
        if not text and not self.allow_blank:
            raise self.make_error("blank")
        if "\x00" in text:
            raise ValidationError("Null characters are not allowed.")
        if self.max_length is not None and len(text) > self.max_length:
            raise ValidationError(f"Ensure this field has no more than {self.max_length} characters.")
        return text


class Amount(fields.Field):
    """DRF's DecimalField(max_digits=20, decimal_places=2): exact, never rounded; kept as 2-place text."""

    default_error_messages = {**REQUIRED, "invalid": "A valid number is required."}
    MAX_DIGITS, DECIMAL_PLACES = 20, 2
    # How the OpenAPI document describes it (numbers are taken too, as DRF takes them).
    DOCUMENTED = {"type": "string", "format": "decimal", "pattern": r"^-?\d{1,18}(\.\d{1,2})?$"}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or len(str(value)) > 1000:
            raise self.make_error("invalid")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation as error:
            raise self.make_error("invalid") from error
        if not number.is_finite():
            raise self.make_error("invalid")
        _, digits, exponent = number.as_tuple()
        if exponent >= 0:
            whole, decimals = len(digits) + exponent, 0
        else:
            decimals = -exponent
            whole = max(0, len(digits) - decimals)
        if whole + decimals > self.MAX_DIGITS:
            raise ValidationError(f"Ensure that there are no more than {self.MAX_DIGITS} digits in total.")
        if decimals > self.DECIMAL_PLACES:
            raise ValidationError(f"Ensure that there are no more than {self.DECIMAL_PLACES} decimal places.")
        if whole > self.MAX_DIGITS - self.DECIMAL_PLACES:
            raise ValidationError(
                f"Ensure that there are no more than {self.MAX_DIGITS - self.DECIMAL_PLACES} digits before the decimal point."
            )
        return f"{number.quantize(Decimal('0.01')):f}"


class Choice(fields.String):
    default_error_messages = {**REQUIRED}

    def __init__(self, choices, **kwargs):
        super().__init__(metadata={"enum": list(choices)}, **kwargs)
        self.choices = choices

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or value not in self.choices:
            raise ValidationError(f'"{value}" is not a valid choice.')
        return value


class Boolean(fields.Boolean):
    default_error_messages = {**REQUIRED, "invalid": "Must be a valid boolean."}


class HexUUID(fields.UUID):
    default_error_messages = {**REQUIRED, "invalid_uuid": "Must be a valid UUID."}

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).hex


class Moment(fields.DateTime):
    """An ISO datetime (a naive one is UTC) in a billing period the ledger's time zone can represent."""

    default_error_messages = {**REQUIRED, "invalid": DATETIME_FORMAT_ERROR}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            moment = clock.parse_datetime(value)
        except ValueError as error:
            raise self.make_error("invalid") from error
        try:
            clock.billing_period(moment)
        except clock.PeriodOutOfRange:
            raise ValidationError(
                f"The billing period of this date cannot be represented in the time zone {clock.timezone_name()}."
            ) from None
        return moment


LINK_DOES_NOT_EXIST = "Invalid hyperlink - Object does not exist."


class OfferingUserLink(fields.String):
    """DRF's HyperlinkedRelatedField to an offering user: a URL, absolute or relative; loads the UUID it names.

    Whether that offering user exists is for the caller to check (and answer LINK_DOES_NOT_EXIST).
    """

    PATH = re.compile(r"^/api/marketplace-offering-users/([^/.]+)/$")
    default_error_messages = {**REQUIRED, "no_match": "Invalid hyperlink - No URL match.", "does_not_exist": LINK_DOES_NOT_EXIST}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError(f"Incorrect type. Expected URL string, received {type(value).__name__}.")
        if not value:
            raise self.make_error("null")  # DRF takes an empty link for null
        try:
            match = self.PATH.match(urlparse(value).path)
        except ValueError:  # not a URL at all, e.g. an unclosed IPv6 host
            match = None
        if not match:
            raise self.make_error("no_match")
        try:
            return uuid.UUID(match[1]).hex
        except ValueError as error:
            raise self.make_error("does_not_exist") from error


class ItemList(fields.List):
    default_error_messages = {**REQUIRED}

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError(f'Expected a list of items but got type "{type(value).__name__}".')
        return super()._deserialize(value, attr, data, **kwargs)


class Request(Schema):
    class Meta:
        unknown = EXCLUDE


class UsageItemRequest(Request):
    type = Text(required=True, max_length=50)
    amount = Amount(required=True, metadata=Amount.DOCUMENTED)
    description = Text(load_default="", allow_blank=True, max_length=2000)
    missing_usage_policy = Choice(POLICIES)
    recurring = Boolean(allow_none=True)


class SetUsageRequest(Request):
    usages = ItemList(fields.Nested(UsageItemRequest), required=True)
    plan_period = HexUUID()
    resource = HexUUID()
    date = Moment()


SET_USAGE = SetUsageRequest()


class UserUsageRequest(Request):
    username = Text(required=True, max_length=100)
    usage = Amount(load_default="0.00", metadata=Amount.DOCUMENTED)
    user = OfferingUserLink(metadata={"format": "uri"})
    date = Moment()


class SetUserUsagesRequest(Request):
    usages = ItemList(fields.Nested(UserUsageRequest), required=True)

    @validates("usages")
    def not_empty(self, value, **kwargs):
        if not value:
            raise ValidationError("This list may not be empty.")


def load(schema: Schema, body) -> dict:
    """The body loaded by `schema`; raises ValidationError with DRF-shaped messages."""
    if not isinstance(body, dict):
        raise ValidationError(
            {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(body).__name__}."]}
        )
    try:
        return schema.load(body)
    except ValidationError as error:
        raise ValidationError(drf_shape(error.messages, body)) from error


def load_set_usage(body) -> dict:
    """SetUsageRequest's load of a set_usage body. A report as site agents send it (a resource's
    uuid, items of a type, an amount and perhaps a description, all text) is read here, exactly as
    the schema reads it (tests/test_set_usage_fields.py compares the two); any other body is left
    to the schema, which words the errors. The schema's load was 7% of a report's time in Python."""
    return _plain_report(body) or load(SET_USAGE, body)


PLAIN_ITEM_KEYS = frozenset({"type", "amount", "description"})
# The schema's own fields, whose rules (lengths, digits) a plain report is read by.
_RESOURCE, _ITEM_FIELDS = SET_USAGE.fields["resource"], UsageItemRequest().fields


def _plain_report(body) -> dict | None:
    """The fields of a plain report (see load_set_usage); None for any other body, or an invalid one."""
    if type(body) is not dict or type(body.get("usages")) is not list or not body.keys() <= {"usages", "resource"}:
        return None
    if type(body.get("resource", "")) is not str:
        return None
    loaded = {}
    try:
        if "resource" in body:
            loaded["resource"] = _RESOURCE._deserialize(body["resource"], "resource", body)
        items = []
        for item in body["usages"]:
            if type(item) is not dict or not item.keys() <= PLAIN_ITEM_KEYS or not {"type", "amount"} <= item.keys() \
                    or not all(type(value) is str for value in item.values()):
                return None
            items.append({name: _ITEM_FIELDS[name]._deserialize(item.get(name, ""), name, item) for name in PLAIN_ITEM_KEYS})
    except ValidationError:
        return None
    loaded["usages"] = items
    return loaded


def drf_shape(messages: dict, body: dict) -> dict:
    """Marshmallow's {index: errors} for list items becomes DRF's list aligned with the input."""
    shaped = {}
    for key, value in messages.items():
        items = body.get(key)
        if isinstance(value, dict) and isinstance(items, list) and all(isinstance(i, int) for i in value):
            shaped[key] = [_item_errors(value.get(index, {}), item) for index, item in enumerate(items)]
        elif key == "_schema":
            shaped["non_field_errors"] = value
        else:
            shaped[key] = value
    return shaped


def _item_errors(errors: dict, item) -> dict:
    if not isinstance(item, dict):
        return {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {type(item).__name__}."]}
    return errors


def blank_if_null(text: str | None) -> str:
    return text or ""


PLACEMENT = {
    "resource_name": Field(TEXT), "resource_uuid": Field(UUID_TEXT), "offering_name": Field(TEXT),
    "offering_uuid": Field(UUID_TEXT), "project_name": Field(TEXT), "project_uuid": Field(UUID_TEXT),
    "customer_name": Field(TEXT), "customer_uuid": Field(UUID_TEXT),
}
# A usage record as the API shows it; placed by its resource, offering, project and the project's customer.
COMPONENT_USAGE = Shape({
    "uuid": Field(UUID_TEXT), "created": Field(MOMENT, clock.wire), "description": Field(TEXT), "type": Field(TEXT),
    "name": Field(TEXT, blank_if_null), "measured_unit": Field(TEXT, blank_if_null), "usage": Field(AMOUNT),
    "date": Field(MOMENT, clock.wire), "missing_usage_policy": Field({"type": "string", "enum": list(POLICIES)}),
    **PLACEMENT, "billing_period": Field(DATE), "modified_by": Field({**INTEGER, "nullable": True}),
    "recurring": Field(BOOLEAN, value=lambda row: row["missing_usage_policy"] == "reuse"),
})


def offering_user_link(row: dict) -> str | None:
    return links.to("marketplace-offering-users", row["user_uuid"]) if row["user_uuid"] else None


# A user usage record as the API shows it.
COMPONENT_USER_USAGE = Shape({
    "uuid": Field(UUID_TEXT), "user": Field({**LINK, "nullable": True}, value=offering_user_link),
    "username": Field(TEXT),
    "component_usage": Field(LINK, value=lambda row: links.to("marketplace-component-usages", row["component_usage_uuid"])),
    "usage": Field(AMOUNT), "measured_unit": Field(TEXT, blank_if_null),
    # Neither can be set through the API; Waldur shows them blank.
    "description": Field(TEXT, value=lambda row: ""),
    "created": Field(MOMENT, clock.wire), "modified": Field(MOMENT, clock.wire),
    "backend_id": Field(TEXT, value=lambda row: ""),
    **PLACEMENT, "component_type": Field(TEXT), "date": Field(MOMENT, clock.wire), "billing_period": Field(DATE),
})
