"""Event types: one marshmallow schema per type and schema version, and upcasters for old shapes.

Data is validated when appended (`check`) and when read (`upgrade`), so a projection
only ever sees the current shape of each type.
"""

import dataclasses
import datetime as dt
import functools
import hashlib
import re
import uuid
from zoneinfo import ZoneInfo

from marshmallow import Schema, ValidationError, fields, validate

from ledger.log.records import NewEvent, StoredEvent
from ledger.rules import clock

UUID_HEX = validate.Regexp(r"^[0-9a-f]{32}$", error="not a 32-digit lowercase hex UUID")
STATES = ("Creating", "OK", "Erred", "Updating", "Terminating", "Terminated")
BILLING_TYPES = ("fixed", "usage", "limit", "one", "few")
LIMIT_PERIODS = ("month", "quarterly", "annual", "total")
POLICIES = ("none", "reuse", "zero")
ID = validate.Range(1, 2**63 - 1, error="not an id from 1 to 2**63-1")  # SQLite's INTEGER holds it
# Regexps, not parsing: replay checks every event, and quick_check runs a Regexp without marshmallow.
FIRST_OF_MONTH = validate.Regexp(r"^(?!0000)\d{4}-(0[1-9]|1[0-2])-01$", error="not the first day of a month (YYYY-MM-01)")
DECIMAL = validate.Regexp(r"^-?\d+(\.\d+)?(E[+-]\d+)?$", error="not a decimal number as the ledger writes it")
STORED_TIME = re.compile(r"^(\d{4}|[1-9]\d{0,2})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$")


class EventDataError(ValueError):
    """Event data that does not match its type's schema."""


class Strict(Schema):
    class Meta:
        unknown = "raise"


class ExactInteger(fields.Integer):
    """An integer written as one in JSON: not 1.0, "1" or true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not int:
            raise ValidationError("Not an integer.")
        return value


class ExactBoolean(fields.Boolean):
    """true or false in JSON: not 1, "yes" or "true"."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not bool:
            raise ValidationError("Not a boolean.")
        return value


def is_stored_time(text: str) -> bool:
    """Whether text is a datetime as the ledger stores it: UTC, microseconds, `Z` (see clock.stored)."""
    match = STORED_TIME.match(text)
    try:
        return match is not None and bool(dt.datetime(*map(int, match.groups())))
    except ValueError:  # e.g. February 30th
        return False


def stored_time(text: str) -> None:
    if not is_stored_time(text):
        raise ValidationError("not a stored datetime (YYYY-MM-DDTHH:MM:SS.ffffffZ)")


def known_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        raise ValidationError("not a known time zone") from None


# How a token is kept (ledger/commands/tokens.py): "hmac-sha256:<hex>", or "sha256:<hex>" from an older ledger.
TOKEN_DIGEST = validate.Regexp(r"^(hmac-sha256|sha256):[0-9a-f]{64}$", error="not a token digest")


class UserDefinedV1(Strict):
    id = ExactInteger(required=True, validate=ID)
    username = fields.String(required=True)
    is_staff = ExactBoolean(required=True)
    is_support = ExactBoolean(required=True)
    token_sha256 = fields.String(required=True, allow_none=True)


class UserDefined(Strict):
    id = ExactInteger(required=True, validate=ID)
    username = fields.String(required=True)
    is_staff = ExactBoolean(required=True)
    is_support = ExactBoolean(required=True)
    token_digest = fields.String(required=True, allow_none=True, validate=TOKEN_DIGEST)


class TokenIssuedV1(Strict):
    user_id = ExactInteger(required=True, validate=ID)
    token_sha256 = fields.String(required=True)


class TokenIssued(Strict):
    """A token issued to a user (`ledger token issue`); its id is the seq of this event."""

    user_id = ExactInteger(required=True, validate=ID)
    token_digest = fields.String(required=True, validate=TOKEN_DIGEST)
    expires_at = fields.String(required=True, allow_none=True, validate=stored_time)


class CustomerDefined(Strict):
    uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)


class ProjectDefined(Strict):
    uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)
    customer_uuid = fields.String(required=True, validate=UUID_HEX)


class Component(Strict):
    type = fields.String(required=True)
    name = fields.String(required=True)
    measured_unit = fields.String(required=True)
    billing_type = fields.String(required=True, validate=validate.OneOf(BILLING_TYPES))
    limit_period = fields.String(required=True, allow_none=True, validate=validate.OneOf(LIMIT_PERIODS))
    limit_amount = fields.String(required=True, allow_none=True, validate=DECIMAL)


class OfferingDefined(Strict):
    uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)
    customer_uuid = fields.String(required=True, validate=UUID_HEX)
    components = fields.List(fields.Nested(Component), required=True)


class OfferingUserDefined(Strict):
    uuid = fields.String(required=True, validate=UUID_HEX)
    offering_uuid = fields.String(required=True, validate=UUID_HEX)
    username = fields.String(required=True)
    user_id = ExactInteger(required=True, allow_none=True, validate=ID)


class PlanPeriod(Strict):
    uuid = fields.String(required=True, validate=UUID_HEX)
    start = fields.String(required=True, validate=stored_time)
    end = fields.String(required=True, allow_none=True, validate=stored_time)


class ResourceDefined(Strict):
    uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)
    offering_uuid = fields.String(required=True, validate=UUID_HEX)
    project_uuid = fields.String(required=True, validate=UUID_HEX)
    state = fields.String(required=True, validate=validate.OneOf(STATES))
    plan_periods = fields.List(fields.Nested(PlanPeriod), required=True)


class RoleChanged(Strict):
    username = fields.String(required=True)
    scope = fields.String(required=True, validate=validate.OneOf(("customer", "project", "offering")))
    scope_uuid = fields.String(required=True, validate=UUID_HEX)
    role = fields.String(required=True)


class UsageReported(Strict):
    """A provider's report of one component's usage of a resource in one billing period."""

    resource_uuid = fields.String(required=True, validate=UUID_HEX)
    type = fields.String(required=True)
    billing_period = fields.String(required=True, validate=FIRST_OF_MONTH)
    plan_period_uuid = fields.String(required=True, validate=UUID_HEX)
    amount = fields.String(required=True, validate=DECIMAL)
    description = fields.String(required=True)
    missing_usage_policy = fields.String(required=True, validate=validate.OneOf(POLICIES))


class UserUsageReported(Strict):
    """A provider's report of one user's share of a usage record (upserted by username)."""

    component_usage_uuid = fields.String(required=True, validate=UUID_HEX)
    username = fields.String(required=True)
    usage = fields.String(required=True, validate=DECIMAL)
    user_uuid = fields.String(required=True, allow_none=True, validate=UUID_HEX)


class BillingPeriodStarted(Strict):
    """The clock passed the start of a billing month: values are carried into it from then on."""

    billing_period = fields.String(required=True, validate=FIRST_OF_MONTH)
    starts_at = fields.String(required=True, validate=stored_time)
    timezone = fields.String(required=True, validate=known_zone)


class ResourceDefinedV2(ResourceDefined):
    """A resource as the catalog defines it, with the site's own name for it (e.g. a SLURM account)."""

    backend_id = fields.String(required=True)


class AgentDependency(Strict):
    package = fields.String(required=True)
    version = fields.String(required=True)


class AgentIdentityRegistered(Strict):
    """A site agent registered (or re-registered with changes) for an offering."""

    uuid = fields.String(required=True, validate=UUID_HEX)
    offering_uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)
    version = fields.String(required=True, allow_none=True)
    dependencies = fields.List(fields.Nested(AgentDependency), required=True)
    config_file_path = fields.String(required=True, allow_none=True)
    config_file_content = fields.String(required=True, allow_none=True)
    last_restarted = fields.String(required=True, allow_none=True)


class AgentServiceRegistered(Strict):
    """A service (one mode of running) of a site agent, registered or changed."""

    uuid = fields.String(required=True, validate=UUID_HEX)
    identity_uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)
    mode = fields.String(required=True, allow_none=True)


class AgentProcessorRegistered(Strict):
    """A processor (one backend) of a site agent's service, registered or changed."""

    uuid = fields.String(required=True, validate=UUID_HEX)
    service_uuid = fields.String(required=True, validate=UUID_HEX)
    name = fields.String(required=True)
    backend_type = fields.String(required=True)
    backend_version = fields.String(required=True, allow_none=True)


class TokenRevoked(Strict):
    """Tokens of a user withdrawn, by id (the seq of the event that made each)."""

    user_id = ExactInteger(required=True, validate=ID)
    token_ids = fields.List(ExactInteger(validate=ID), required=True)


# (type, schema_version) -> schema of that shape.
SCHEMAS: dict[tuple[str, int], Schema] = {
    ("UserDefined", 1): UserDefinedV1(),
    ("UserDefined", 2): UserDefined(),
    ("TokenIssued", 1): TokenIssuedV1(),
    ("TokenIssued", 2): TokenIssued(),
    ("CustomerDefined", 1): CustomerDefined(),
    ("ProjectDefined", 1): ProjectDefined(),
    ("OfferingDefined", 1): OfferingDefined(),
    ("OfferingUserDefined", 1): OfferingUserDefined(),
    ("ResourceDefined", 1): ResourceDefined(),
    ("RoleGranted", 1): RoleChanged(),
    ("RoleRevoked", 1): RoleChanged(),
    ("UsageReported", 1): UsageReported(),
    ("UserUsageReported", 1): UserUsageReported(),
    ("BillingPeriodStarted", 1): BillingPeriodStarted(),
    ("ResourceDefined", 2): ResourceDefinedV2(),
    ("AgentIdentityRegistered", 1): AgentIdentityRegistered(),
    ("AgentServiceRegistered", 1): AgentServiceRegistered(),
    ("AgentProcessorRegistered", 1): AgentProcessorRegistered(),
    ("TokenRevoked", 1): TokenRevoked(),
}


def _legacy_digest(sha256: str | None) -> str | None:
    return None if sha256 is None else f"sha256:{sha256}"


# (type, from_version) -> function turning data of that version into the next one.
UPCASTERS: dict[tuple[str, int], callable] = {
    ("ResourceDefined", 1): lambda data: data | {"backend_id": ""},  # resources defined before backend ids had none
    # Ledgers before keyed digests kept a token's plain SHA-256: it still authenticates, marked as such.
    ("UserDefined", 1): lambda data: {
        **{key: value for key, value in data.items() if key != "token_sha256"},
        "token_digest": _legacy_digest(data["token_sha256"]),
    },
    ("TokenIssued", 1): lambda data: {
        "user_id": data["user_id"], "token_digest": _legacy_digest(data["token_sha256"]), "expires_at": None,
    },
}

CURRENT_VERSION = {event_type: max(v for t, v in SCHEMAS if t == event_type) for event_type, _ in SCHEMAS}


def check(event: NewEvent) -> NewEvent:
    """Validates a new event's data against its type's current schema."""
    _validate(event.type, event.schema_version, event.data)
    return event


def new(stream: str, version: int, event_type: str, data: dict, occurred_at: str, actor_id: int | None = None) -> NewEvent:
    """A validated new event in the current schema version of its type."""
    schema_version = CURRENT_VERSION.get(event_type, 1)  # an unknown type is then rejected by check
    event = check(NewEvent(stream, version, event_type, data, occurred_at, actor_id, schema_version))
    event.data_text  # encoded now, while deciding, rather than while holding the writer lock
    return event


def upgrade(event: StoredEvent) -> StoredEvent:
    """The event with its data validated and upcast to the current schema version of its type."""
    data, version = event.data, event.schema_version
    _validate(event.type, version, data)
    while version < CURRENT_VERSION[event.type]:
        data = UPCASTERS[(event.type, version)](data)
        version += 1
    if version != event.schema_version:
        _validate(event.type, version, data)
    return with_padded_years(event, data, version)


def with_padded_years(event: StoredEvent, data: dict, version: int) -> StoredEvent:
    """The event with its stored times' years in four digits, as earlier versions did not store years before 1000."""
    occurred_at = clock.padded(event.occurred_at)
    if event.type == "ResourceDefined":
        periods = [{**p, "start": clock.padded(p["start"]), "end": p["end"] and clock.padded(p["end"])}
                   for p in data["plan_periods"]]
        if periods != data["plan_periods"]:
            data = {**data, "plan_periods": periods}
    elif event.type == "BillingPeriodStarted" and clock.padded(data["starts_at"]) != data["starts_at"]:
        data = {**data, "starts_at": clock.padded(data["starts_at"])}
    if (occurred_at, data, version) == (event.occurred_at, event.data, event.schema_version):
        return event
    return dataclasses.replace(event, occurred_at=occurred_at, data=data, schema_version=version)


def _validate(event_type: str, version: int, data: dict) -> None:
    schema = SCHEMAS.get((event_type, version))
    if schema is None:
        raise EventDataError(f"unknown event type {event_type!r} version {version}")
    quick = quick_check(schema)
    try:
        if quick is None or not quick(data):
            schema.load(data)
        agrees = AGREEMENTS.get(event_type)
        if agrees:
            agrees(data)
    except ValidationError as error:
        raise EventDataError(f"{event_type} v{version}: {error.messages}") from error


def _period_starts_at_its_start(data: dict) -> None:
    """A billing period starts at the first instant of its month in the time zone it names."""
    period = dt.date.fromisoformat(data["billing_period"])
    try:
        start = clock.stored(clock.period_start(period, data["timezone"]))
    except OverflowError:  # a month at the edge of time whose start in that zone is not representable
        start = None
    if data["starts_at"] != start:
        raise ValidationError({"starts_at": [f"not the start of {data['billing_period'][:7]} in {data['timezone']}"]})


# event type -> a check across fields of data that has passed its schema.
AGREEMENTS = {"BillingPeriodStarted": _period_starts_at_its_start}


@functools.cache
def quick_check(schema: Schema):
    """A fast predicate that accepts only data the schema accepts, for flat schemas of strings,
    integers and booleans with OneOf/Regexp validators; None for any other schema.

    Replaying a log validates every event, so the common shapes are checked without marshmallow's
    machinery; whatever the predicate does not accept still goes to the schema, which decides.
    """
    kinds = {fields.String: (str,), ExactInteger: (int,), ExactBoolean: (bool,)}
    checks = []
    for name, field in schema.fields.items():
        if type(field) not in kinds:
            return None
        allowed, tests = kinds[type(field)], []
        for validator in field.validators:
            if isinstance(validator, validate.OneOf):
                tests.append(frozenset(validator.choices).__contains__)
            elif isinstance(validator, validate.Regexp):
                tests.append(lambda value, match=validator.regex.match: match(value) is not None)
            else:
                tests.append(functools.partial(_passes, validator))
        checks.append((name, field.required, field.allow_none, allowed, tests))
    names = frozenset(schema.fields)

    def accepts(data: dict) -> bool:
        if not isinstance(data, dict) or not names.issuperset(data):
            return False
        for name, required, allow_none, allowed, tests in checks:
            if name not in data:
                if required:
                    return False
                continue
            value = data[name]
            if value is None:
                if not allow_none:
                    return False
                continue
            if type(value) not in allowed:
                return False
            for test in tests:  # a loop, not all(...): a rebuild asks this of every field of every event
                if not test(value):
                    return False
        return True

    return accepts


def _passes(validator, value) -> bool:
    try:
        validator(value)
    except ValidationError:
        return False
    return True



RECORD_NAMESPACE = uuid.UUID("6f6c2d1a-3b1e-4a47-9d8e-6c6564676572")


def name_uuid(name: str) -> str:
    """`uuid.uuid5(RECORD_NAMESPACE, name).hex`, without making the UUID object on the way: every
    report folded asks for one, and a rebuild folds a million."""
    digest = bytearray(hashlib.sha1(RECORD_NAMESPACE.bytes + name.encode()).digest()[:16])
    digest[6] = digest[6] & 0x0F | 0x50  # version 5
    digest[8] = digest[8] & 0x3F | 0x80  # RFC 4122 variant
    return digest.hex()


def usage_streams_prefix(resource_uuid: str) -> str:
    """The start of the names of every usage record stream of a resource."""
    return f"usage/{resource_uuid}/"


def usage_stream(resource_uuid: str, component_type: str, billing_period: str) -> str:
    """The stream of one usage record: (resource, component type, billing period YYYY-MM-DD)."""
    return f"{usage_streams_prefix(resource_uuid)}{component_type}/{billing_period[:7]}"


@functools.lru_cache(maxsize=64)  # each view folding a report asks for its record's uuid again
def usage_record_uuid(resource_uuid: str, component_type: str, billing_period: str) -> str:
    """A usage record's UUID, derived from its key so that every replay gives the same one."""
    return name_uuid(usage_stream(resource_uuid, component_type, billing_period))


def user_usage_streams_prefix(component_usage_uuid: str) -> str:
    """The start of the names of the user usage streams of one usage record."""
    return f"user-usage/{component_usage_uuid}/"


def user_usage_stream(component_usage_uuid: str, username: str) -> str:
    """The stream of one user usage record: (usage record, username)."""
    return f"{user_usage_streams_prefix(component_usage_uuid)}{username}"


def user_usage_uuid(component_usage_uuid: str, username: str) -> str:
    """A user usage record's UUID, derived from its key so that every replay gives the same one."""
    return name_uuid(user_usage_stream(component_usage_uuid, username))
