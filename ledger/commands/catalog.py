"""The catalog file: validated whole, then turned into the catalog events that differ from the log."""

import json
from decimal import Decimal, InvalidOperation

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ledger.backends import Connection
from ledger.commands import tokens
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import NewEvent, canonical
from ledger.log.store import EventStore
from ledger.rules import clock

COMPONENT_TYPE = validate.Regexp(r"^[a-zA-Z0-9_\-/:]+$", error="Enter a valid component type.")
# Waldur's own length limits, so that nothing in the catalog is longer than Waldur would hold
# (and a name of megabytes is refused, not carried through every view and verify).
NAME = validate.Length(max=150)
PROJECT_NAME = validate.Length(max=500)
USERNAME = validate.Length(1, 128)
OFFERING_USERNAME = validate.Length(1, 100)
MEASURED_UNIT = validate.Length(max=30)
TOKEN = validate.Length(1, 255)  # no limit in Waldur's catalog; its own tokens have 40 characters
AMOUNT_CHARACTERS = 40
USER_ID = validate.Range(1, 2**63 - 1)  # positive, and within SQLite's INTEGER
ROLES_BY_SCOPE = {"customer": ("owner", "manager"), "project": ("admin", "manager", "member"), "offering": ("manager",)}


class CatalogError(ValueError):
    """A catalog file that cannot be loaded; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class HexUUID(fields.UUID):
    """A UUID given hyphenated or as 32 hex digits, kept as 32 lowercase hex digits."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).hex


class Amount(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValidationError("Not a valid number.")
        if isinstance(value, str) and len(value) > AMOUNT_CHARACTERS:
            raise ValidationError(f"Longer than maximum length {AMOUNT_CHARACTERS}.")
        try:
            number = Decimal(str(value))
        except InvalidOperation as error:
            raise ValidationError("Not a valid number.") from error
        if not number.is_finite():
            raise ValidationError("Not a valid number.")
        return str(number)


class Moment(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return clock.stored(clock.parse_datetime(value))
        except (TypeError, ValueError, AttributeError) as error:
            raise ValidationError("Not a valid datetime.") from error


class Closed(Schema):
    class Meta:
        unknown = "raise"


class UserFile(Closed):
    id = fields.Integer(required=True, strict=True, validate=USER_ID)
    username = fields.String(required=True, validate=USERNAME)
    token = fields.String(load_default=None, allow_none=True, validate=TOKEN)
    is_staff = fields.Boolean(load_default=False)
    is_support = fields.Boolean(load_default=False)


class CustomerFile(Closed):
    uuid = HexUUID(required=True)
    name = fields.String(required=True, validate=NAME)


class ProjectFile(Closed):
    uuid = HexUUID(required=True)
    name = fields.String(required=True, validate=PROJECT_NAME)
    customer_uuid = HexUUID(required=True)


class ComponentFile(Closed):
    type = fields.String(required=True, validate=[validate.Length(1, 50), COMPONENT_TYPE])
    name = fields.String(required=True, validate=NAME)
    measured_unit = fields.String(load_default="", validate=MEASURED_UNIT)
    billing_type = fields.String(required=True, validate=validate.OneOf(events.BILLING_TYPES))
    limit_period = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(events.LIMIT_PERIODS))
    limit_amount = Amount(load_default=None, allow_none=True)


class OfferingFile(Closed):
    uuid = HexUUID(required=True)
    name = fields.String(required=True, validate=NAME)
    customer_uuid = HexUUID(required=True)
    components = fields.List(fields.Nested(ComponentFile), load_default=list)

    @validates_schema
    def unique_component_types(self, data, **kwargs):
        seen = set()
        for index, component in enumerate(data.get("components", [])):
            if component["type"] in seen:
                raise ValidationError(
                    {"components": {index: {"type": [f"Duplicate component type {component['type']!r}."]}}}
                )
            seen.add(component["type"])


class OfferingUserFile(Closed):
    uuid = HexUUID(required=True)
    offering_uuid = HexUUID(required=True)
    username = fields.String(required=True, validate=OFFERING_USERNAME)
    user_id = fields.Integer(load_default=None, allow_none=True, strict=True, validate=USER_ID)


class PlanPeriodFile(Closed):
    uuid = HexUUID(required=True)
    start = Moment(required=True)
    end = Moment(load_default=None, allow_none=True)


class ResourceFile(Closed):
    uuid = HexUUID(required=True)
    name = fields.String(required=True, validate=NAME)
    offering_uuid = HexUUID(required=True)
    project_uuid = HexUUID(required=True)
    state = fields.String(required=True, validate=validate.OneOf(events.STATES))
    plan_periods = fields.List(fields.Nested(PlanPeriodFile), load_default=list)
    backend_id = fields.String(load_default="", validate=validate.Length(max=255))  # the site's own name for it


class RoleFile(Closed):
    username = fields.String(required=True, validate=USERNAME)
    scope = fields.String(required=True, validate=validate.OneOf(tuple(ROLES_BY_SCOPE)))
    scope_uuid = HexUUID(required=True)
    role = fields.String(required=True)
    revoked = fields.Boolean(load_default=False)

    @validates_schema
    def role_fits_scope(self, data, **kwargs):
        allowed = ROLES_BY_SCOPE.get(data.get("scope"), ())
        if data.get("role") not in allowed:
            raise ValidationError({"role": [f"Must be one of: {', '.join(allowed)}."]})


class CatalogFile(Closed):
    users = fields.List(fields.Nested(UserFile), load_default=list)
    customers = fields.List(fields.Nested(CustomerFile), load_default=list)
    projects = fields.List(fields.Nested(ProjectFile), load_default=list)
    offerings = fields.List(fields.Nested(OfferingFile), load_default=list)
    offering_users = fields.List(fields.Nested(OfferingUserFile), load_default=list)
    resources = fields.List(fields.Nested(ResourceFile), load_default=list)
    roles = fields.List(fields.Nested(RoleFile), load_default=list)


def parse(text: str) -> tuple[dict, list[str]]:
    """The catalog file's content and one line per problem of shape. With problems, the content
    holds only what was valid (an item keeps its valid fields), for checking references; raises
    CatalogError for a file that is not JSON at all."""
    try:
        document = json.loads(text)
        canonical(document).encode()  # "\ud800" parses, but a lone surrogate is not text: it could not be stored
    except (ValueError, RecursionError) as error:  # JSONDecodeError and the Unicode errors are ValueErrors
        raise CatalogError([f"$: not valid JSON: {error}"]) from error
    try:
        return CatalogFile().load(document), []
    except ValidationError as error:
        valid = error.valid_data if isinstance(error.valid_data, dict) else {}
        partial = {
            section: [item if isinstance(item, dict) else {} for item in valid.get(section) or []]
            for section in CatalogFile().fields
        }
        return partial, sorted(_flatten(error.messages, "$"))


def _flatten(messages, path: str) -> list[str]:
    if isinstance(messages, dict):
        lines = []
        for key, value in messages.items():
            if isinstance(key, int):
                lines += _flatten(value, f"{path}[{key}]")
            elif key == "_schema":
                lines += _flatten(value, path)
            else:
                lines += _flatten(value, f"{path}.{key}")
        return lines
    return [f"{path}: {message}" for message in messages]


def reference_problems(catalog: dict, conn: Connection) -> list[str]:
    """One line per reference in the file that names nothing in the file or already in the catalog,
    and per name claimed twice. Items may be partial (see `parse`): what is missing is not checked."""
    problems = []

    def known(table: str, column: str, listed: list[dict], key: str) -> set:
        existing = {row[0] for row in conn.execute(f"SELECT {column} FROM {table}")}
        return existing | {item[key] for item in listed if key in item}

    def unique(section: str, key: str) -> None:
        seen = set()
        for index, item in enumerate(catalog[section]):
            if key in item and item[key] in seen:
                problems.append(f"$.{section}[{index}].{key}: duplicate {key} {item[key]!r} in this file")
            seen.add(item.get(key))

    for section, key in (("users", "id"), ("users", "username"), ("customers", "uuid"), ("projects", "uuid"),
                         ("offerings", "uuid"), ("offering_users", "uuid"), ("resources", "uuid")):
        unique(section, key)
    check_claims(catalog, conn, problems)

    customers = known("customers", "uuid", catalog["customers"], "uuid")
    projects = known("projects", "uuid", catalog["projects"], "uuid")
    offerings = known("offerings", "uuid", catalog["offerings"], "uuid")
    usernames = known("users", "username", catalog["users"], "username")
    user_ids = known("users", "id", catalog["users"], "id")
    scopes = {"customer": customers, "project": projects, "offering": offerings}

    def refer(section: str, index: int, field: str, universe: set, what: str) -> None:
        value = catalog[section][index].get(field)
        if value is not None and value not in universe:
            problems.append(f"$.{section}[{index}].{field}: unknown {what} {value!r}")

    for i in range(len(catalog["projects"])):
        refer("projects", i, "customer_uuid", customers, "customer")
    for i in range(len(catalog["offerings"])):
        refer("offerings", i, "customer_uuid", customers, "customer")
    for i in range(len(catalog["offering_users"])):
        refer("offering_users", i, "offering_uuid", offerings, "offering")
        refer("offering_users", i, "user_id", user_ids, "user id")
    for i in range(len(catalog["resources"])):
        refer("resources", i, "offering_uuid", offerings, "offering")
        refer("resources", i, "project_uuid", projects, "project")
    for i, item in enumerate(catalog["roles"]):
        refer("roles", i, "username", usernames, "user")
        if item.get("scope") in scopes:
            refer("roles", i, "scope_uuid", scopes[item["scope"]], item["scope"])
    return problems


def check_claims(catalog: dict, conn: Connection, problems: list[str]) -> None:
    """Names that only one holder may have: taking one from another holder would silently
    drop it from the views (a username, a token, a plan period) or make the file contradict
    itself (the same role listed twice)."""
    redefined = {user.get("id") for user in catalog["users"]}
    usernames = dict(conn.execute("SELECT username, id FROM users"))
    held = {digest: (user_id, source) for digest, user_id, source in conn.execute("SELECT digest, user_id, source FROM tokens")}
    token_key = tokens.key(conn)
    file_tokens: set[str] = set()
    for index, user in enumerate(catalog["users"]):
        if "id" not in user:  # whose claims these are is unknown: the id's own problem is reported
            continue
        holder = usernames.get(user.get("username"))
        if holder not in (None, user["id"]) and holder not in redefined:
            problems.append(f"$.users[{index}].username: {user['username']!r} belongs to user {holder}")
        if not user.get("token"):
            continue
        digests = tokens.digests(token_key, user["token"])
        holder, source = next((held[digest] for digest in digests if digest in held), (None, None))
        if digests[0] in file_tokens or (
            holder not in (None, user["id"]) and not (source == "catalog" and holder in redefined)
        ):
            problems.append(f"$.users[{index}].token: this token belongs to another user")
        file_tokens.add(digests[0])

    owners = dict(conn.execute("SELECT uuid, resource_uuid FROM plan_periods"))
    listed: set[str] = set()
    for index, resource in enumerate(catalog["resources"]):
        for position, plan_period in enumerate(resource.get("plan_periods") or []):
            path, uuid = f"$.resources[{index}].plan_periods[{position}].uuid", plan_period.get("uuid")
            if uuid is None or "uuid" not in resource:
                continue
            if uuid in listed:
                problems.append(f"{path}: duplicate uuid {uuid!r} in this file")
            elif owners.get(uuid, resource["uuid"]) != resource["uuid"]:
                problems.append(f"{path}: plan period {uuid!r} belongs to resource {owners[uuid]!r}")
            listed.add(uuid)

    grants = set()
    for index, role in enumerate(catalog["roles"]):
        grant = (role.get("username"), role.get("scope"), role.get("scope_uuid"), role.get("role"))
        if None not in grant and grant in grants:
            problems.append(f"$.roles[{index}]: the same role of {role['username']!r} is listed twice")
        grants.add(grant)


def decide(catalog: dict, store: EventStore, occurred_at: str, token_key: bytes, actor_id: int | None = None) -> list[NewEvent]:
    """The catalog events that bring the log to what the file says; none for what is unchanged.
    Tokens are kept as digests under `token_key` (ledger/commands/tokens.py)."""
    decided = []

    def define(stream: str, event_type: str, data: dict) -> None:
        last = store.last_event(stream)
        if last is None or last.type != event_type or events.upgrade(last).data != data:
            version = (last.version if last else 0) + 1
            decided.append(events.new(stream, version, event_type, data, occurred_at, actor_id))

    for user in catalog["users"]:
        token = tokens.digest(token_key, user["token"]) if user["token"] else None
        data = {key: user[key] for key in ("id", "username", "is_staff", "is_support")} | {"token_digest": token}
        define(f"user/{user['id']}", "UserDefined", data)
    for customer in catalog["customers"]:
        define(f"customer/{customer['uuid']}", "CustomerDefined", customer)
    for project in catalog["projects"]:
        define(f"project/{project['uuid']}", "ProjectDefined", project)
    for offering in catalog["offerings"]:
        define(f"offering/{offering['uuid']}", "OfferingDefined", offering)
    for offering_user in catalog["offering_users"]:
        define(f"offering-user/{offering_user['uuid']}", "OfferingUserDefined", offering_user)
    for resource in catalog["resources"]:
        define(f"resource/{resource['uuid']}", "ResourceDefined", resource)
    for role in catalog["roles"]:
        grant = {key: role[key] for key in ("username", "scope", "scope_uuid", "role")}
        stream = f"role/{role['username']}/{role['scope']}/{role['scope_uuid']}/{role['role']}"
        last = store.last_event(stream)
        granted = last is not None and last.type == "RoleGranted"
        if role["revoked"] and granted:
            decided.append(events.new(stream, last.version + 1, "RoleRevoked", grant, occurred_at, actor_id))
        elif not role["revoked"] and not granted:
            version = (last.version if last else 0) + 1
            decided.append(events.new(stream, version, "RoleGranted", grant, occurred_at, actor_id))
    return decided


def load(ledger: Ledger, text: bytes | str) -> int:
    """Validates a catalog file whole and appends its changes; returns how many catalog events."""
    parsed, problems = parse(text)
    with ledger.locked():  # the views hold every event while the changes are decided
        problems += reference_problems(parsed, ledger.conn)
        if problems:
            raise CatalogError(problems)
        decided = decide(parsed, ledger.store, clock.stored(clock.now()), tokens.key(ledger.conn))
        ledger.write(lambda: decided)
    return len(decided)
