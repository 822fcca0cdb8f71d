"""`ledger catalog load`: an upsert by difference, a bad file rejected whole, tokens kept only as hashes."""

import hashlib
import json
import uuid
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ledger import history
from ledger.cli import cli, load_catalog
from ledger.commands import tokens, usage
from ledger.commands.catalog import parse
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import NewEvent
from ledger.rules.access import Caller

from .conftest import auth, event_count
from .world import (
    CLIENT,
    OFFERING,
    PLAN_PERIOD,
    PROJECT,
    PROVIDER,
    RESOURCE,
    USERS,
    token,
)

LIST = "/api/marketplace-component-usages/"
STAFF = Caller(id=1, username="staff", is_staff=True)


def appended_by(ledger: Ledger, text: str) -> list[tuple[str, str]]:
    """Loads a catalog file; returns (type, stream) of each event it appended."""
    before = ledger.store.count()
    load_catalog(ledger, text)
    return [(event.type, event.stream) for event in ledger.store.read(after=before)]


def problems(ledger: Ledger, text: str) -> list[str]:
    """Loads a file that must be rejected; returns its problem lines, having checked nothing was appended."""
    before = ledger.store.count()
    with pytest.raises(click.ClickException) as rejected:
        load_catalog(ledger, text)
    assert ledger.store.count() == before
    header, *lines = rejected.value.message.splitlines()
    assert header == "catalog rejected:"
    return lines


def raw_bytes(db_path: str) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    return b"".join(path.read_bytes() for path in Path(db_path).parent.glob(Path(db_path).name + "*"))


def spelled(document, spell):
    """The document with every 32-hex-digit UUID written by `spell(uuid.UUID)`."""
    if isinstance(document, dict):
        return {key: spelled(value, spell) for key, value in document.items()}
    if isinstance(document, list):
        return [spelled(value, spell) for value in document]
    if isinstance(document, str) and len(document) == 32:
        try:
            return spell(uuid.UUID(hex=document))
        except ValueError:
            return document
    return document


def test_loading_the_same_file_twice_appends_nothing(ledger, catalog):
    assert appended_by(ledger, json.dumps(catalog)) == []


def test_loading_into_an_empty_log_appends_one_event_per_object(tmp_path, catalog, now):
    ledger = Ledger(str(tmp_path / "fresh.db"))
    ledger.init()
    appended = appended_by(ledger, json.dumps(catalog))
    ledger.close()
    objects = sum(len(catalog[section]) for section in catalog)
    assert len([kind for kind, _ in appended if kind != "BillingPeriodStarted"]) == objects


def test_a_change_appends_only_the_changed_objects_events(ledger, catalog):
    catalog["customers"][0]["name"] = "Provider Org Ltd"
    catalog["offerings"][0]["components"].append(
        {"type": "gpu", "name": "GPU hours", "measured_unit": "h", "billing_type": "usage"}
    )
    catalog["resources"][0]["state"] = "Updating"
    assert appended_by(ledger, json.dumps(catalog)) == [
        ("CustomerDefined", f"customer/{PROVIDER}"),
        ("OfferingDefined", f"offering/{OFFERING}"),
        ("ResourceDefined", f"resource/{RESOURCE}"),
    ]


def test_a_change_reaches_the_catalog_view(ledger, catalog):
    catalog["customers"][1]["name"] = "Client Org Renamed"
    load_catalog(ledger, json.dumps(catalog))
    assert ledger.conn.execute("SELECT name FROM customers WHERE uuid = ?", (CLIENT,)).fetchone() == (
        "Client Org Renamed",
    )


def test_a_file_naming_only_some_objects_leaves_the_others_alone(ledger):
    assert appended_by(ledger, json.dumps({"customers": [{"uuid": CLIENT, "name": "Client Org"}]})) == []
    assert ledger.conn.execute("SELECT COUNT(*) FROM customers").fetchone() == (3,)


@pytest.mark.parametrize(
    "spell", [str, lambda u: str(u).upper(), lambda u: u.hex.upper()], ids=["hyphenated", "upper-hyphenated", "upper-hex"]
)
def test_uuids_in_any_spelling_are_the_same_objects(ledger, catalog, spell):
    assert appended_by(ledger, json.dumps(spelled(catalog, spell))) == []


def test_uuids_are_kept_as_lowercase_hex(ledger):
    hyphenated = "0a000000-0000-0000-0000-0000000000ff"
    load_catalog(ledger, json.dumps({"customers": [{"uuid": hyphenated, "name": "New Org"}]}))
    assert ledger.conn.execute("SELECT uuid FROM customers WHERE name = 'New Org'").fetchone() == (
        "0a0000000000000000000000000000ff",
    )


UNKNOWN = "0a0000000000000000000000000000ee"


def mutate(change):
    """A bad file: the test catalog with one change applied."""

    def text(catalog: dict) -> str:
        change(catalog)
        return json.dumps(catalog)

    return text


BAD_FILES = {
    "not-json": (lambda catalog: "{users: []", "$: not valid JSON"),
    "not-an-object": (lambda catalog: "[]", "$: Invalid input type."),
    "not-utf8": (lambda catalog: b"\xff\xfe{}", "$: not valid JSON"),
    "unknown-section": (mutate(lambda c: c.update(tenants=[])), "$.tenants: Unknown field."),
    "unknown-customer": (
        mutate(lambda c: c["projects"][0].update(customer_uuid=UNKNOWN)),
        f"$.projects[0].customer_uuid: unknown customer '{UNKNOWN}'",
    ),
    "unknown-offering": (
        mutate(lambda c: c["resources"][1].update(offering_uuid=UNKNOWN)),
        f"$.resources[1].offering_uuid: unknown offering '{UNKNOWN}'",
    ),
    "unknown-project": (
        mutate(lambda c: c["resources"][0].update(project_uuid=UNKNOWN)),
        f"$.resources[0].project_uuid: unknown project '{UNKNOWN}'",
    ),
    "unknown-user-id": (
        mutate(lambda c: c["offering_users"][0].update(user_id=999)),
        "$.offering_users[0].user_id: unknown user id 999",
    ),
    "unknown-role-holder": (
        mutate(lambda c: c["roles"][0].update(username="nobody")),
        "$.roles[0].username: unknown user 'nobody'",
    ),
    "unknown-role-scope": (
        mutate(lambda c: c["roles"][0].update(scope="project", role="member")),
        f"$.roles[0].scope_uuid: unknown project '{PROVIDER}'",
    ),
    "bad-uuid": (mutate(lambda c: c["customers"][0].update(uuid="0a00-nope")), "$.customers[0].uuid: Not a valid UUID."),
    "bad-nested-uuid": (
        mutate(lambda c: c["resources"][0]["plan_periods"][0].update(uuid="x")),
        "$.resources[0].plan_periods[0].uuid: Not a valid UUID.",
    ),
    "bad-state": (
        mutate(lambda c: c["resources"][0].update(state="Running")),
        "$.resources[0].state: Must be one of: Creating, OK, Erred, Updating, Terminating, Terminated.",
    ),
    "bad-billing-type": (
        mutate(lambda c: c["offerings"][0]["components"][0].update(billing_type="free")),
        "$.offerings[0].components[0].billing_type: Must be one of: fixed, usage, limit, one, few.",
    ),
    "bad-component-type": (
        mutate(lambda c: c["offerings"][0]["components"][0].update(type="cpu hours")),
        "$.offerings[0].components[0].type: Enter a valid component type.",
    ),
    "bad-datetime": (
        mutate(lambda c: c["resources"][0]["plan_periods"][0].update(start="January")),
        "$.resources[0].plan_periods[0].start: Not a valid datetime.",
    ),
    "duplicate-component-type": (
        mutate(lambda c: c["offerings"][0]["components"].append(dict(c["offerings"][0]["components"][1]))),
        "$.offerings[0].components[5].type: Duplicate component type 'ram'.",
    ),
    "missing-field": (
        mutate(lambda c: c["customers"][1].pop("name")),
        "$.customers[1].name: Missing data for required field.",
    ),
    "missing-nested-field": (
        mutate(lambda c: c["resources"][0]["plan_periods"][0].pop("start")),
        "$.resources[0].plan_periods[0].start: Missing data for required field.",
    ),
    "string-for-integer": (mutate(lambda c: c["users"][0].update(id="1")), "$.users[0].id: Not a valid integer."),
    "number-for-string": (mutate(lambda c: c["customers"][0].update(name=5)), "$.customers[0].name: Not a valid string."),
    "null-for-string": (
        mutate(lambda c: c["projects"][0].update(name=None)),
        "$.projects[0].name: Field may not be null.",
    ),
    "object-for-list": (mutate(lambda c: c.update(customers={})), "$.customers: Not a valid list."),
    "string-for-boolean": (
        mutate(lambda c: c["users"][0].update(is_staff="maybe")),
        "$.users[0].is_staff: Not a valid boolean.",
    ),
    "role-not-valid-for-scope": (
        mutate(lambda c: c["roles"][0].update(role="admin")),
        "$.roles[0].role: Must be one of: owner, manager.",
    ),
    "unknown-scope": (
        mutate(lambda c: c["roles"][0].update(scope="team")),
        "$.roles[0].scope: Must be one of: customer, project, offering.",
    ),
    "duplicate-customer-uuid": (
        mutate(lambda c: c["customers"].append({"uuid": CLIENT, "name": "Twin"})),
        f"$.customers[3].uuid: duplicate uuid '{CLIENT}' in this file",
    ),
    "duplicate-uuid-spelled-differently": (
        mutate(lambda c: c["projects"].append({"uuid": str(uuid.UUID(PROJECT)), "name": "Twin", "customer_uuid": CLIENT})),
        f"$.projects[2].uuid: duplicate uuid '{PROJECT}' in this file",
    ),
    "duplicate-user-id": (
        mutate(lambda c: c["users"].append({"id": 1, "username": "twin"})),
        "$.users[12].id: duplicate id 1 in this file",
    ),
    "duplicate-username": (
        mutate(lambda c: c["users"].append({"id": 99, "username": "staff"})),
        "$.users[12].username: duplicate username 'staff' in this file",
    ),
    "duplicate-plan-period-uuid": (
        mutate(lambda c: c["resources"][1]["plan_periods"].append(dict(c["resources"][0]["plan_periods"][0]))),
        f"$.resources[1].plan_periods[1].uuid: duplicate uuid '{PLAN_PERIOD}' in this file",
    ),
    "duplicate-role": (
        mutate(lambda c: c["roles"].append(dict(c["roles"][0], revoked=True))),
        "$.roles[9]: the same role of 'provider-owner' is listed twice",
    ),
    "shared-token": (
        mutate(lambda c: c["users"][1].update(token=token("staff"))),
        "$.users[1].token: this token belongs to another user",
    ),
}


@pytest.mark.parametrize(("make_file", "line"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_file_is_rejected_naming_the_path_of_its_problem(ledger, catalog, make_file, line):
    lines = problems(ledger, make_file(catalog))
    assert len(lines) == 1
    assert lines[0].startswith(line)


def test_a_bad_file_reports_one_line_per_problem(ledger, catalog):
    catalog["customers"][0]["uuid"] = "bad"
    catalog["resources"][0]["state"] = "Running"
    catalog["projects"][1]["customer_uuid"] = UNKNOWN
    catalog["resources"][1]["project_uuid"] = UNKNOWN
    assert problems(ledger, json.dumps(catalog)) == [
        "$.customers[0].uuid: Not a valid UUID.",
        "$.resources[0].state: Must be one of: Creating, OK, Erred, Updating, Terminating, Terminated.",
        f"$.projects[1].customer_uuid: unknown customer '{UNKNOWN}'",
        f"$.resources[1].project_uuid: unknown project '{UNKNOWN}'",
    ]  # field problems and unknown references together, in one run


# (JSON path, how to set it in the test catalog, Waldur's longest)
BOUNDED_STRINGS = {
    "$.customers[0].name": (lambda c, v: c["customers"][0].update(name=v), 150),
    "$.projects[0].name": (lambda c, v: c["projects"][0].update(name=v), 500),
    "$.offerings[0].name": (lambda c, v: c["offerings"][0].update(name=v), 150),
    "$.offerings[0].components[0].name": (lambda c, v: c["offerings"][0]["components"][0].update(name=v), 150),
    "$.offerings[0].components[0].measured_unit": (
        lambda c, v: c["offerings"][0]["components"][0].update(measured_unit=v), 30),
    "$.resources[0].name": (lambda c, v: c["resources"][0].update(name=v), 150),
    "$.users[0].username": (lambda c, v: c["users"][0].update(username=v), 128),
    "$.users[0].token": (lambda c, v: c["users"][0].update(token=v), 255),
    "$.offering_users[0].username": (lambda c, v: c["offering_users"][0].update(username=v), 100),
    "$.roles[0].username": (lambda c, v: c["roles"][0].update(username=v), 128),
}


@pytest.mark.parametrize("path", BOUNDED_STRINGS)
def test_a_catalog_string_over_its_limit_is_refused_naming_its_path(ledger, catalog, path):
    set_value, longest = BOUNDED_STRINGS[path]
    set_value(catalog, "x" * (longest + 1))
    lines = [line for line in problems(ledger, json.dumps(catalog)) if line.startswith(f"{path}: ")]
    assert lines in ([f"{path}: Longer than maximum length {longest}."], [f"{path}: Length must be between 1 and {longest}."])


@pytest.mark.parametrize("path", [p for p in BOUNDED_STRINGS if "username" not in p])
def test_a_catalog_string_at_its_limit_loads(ledger, catalog, path):
    set_value, longest = BOUNDED_STRINGS[path]
    set_value(catalog, "x" * longest)
    assert load_catalog(ledger, json.dumps(catalog)) == 1


def test_a_huge_customer_name_is_refused_and_the_whole_file_with_it(ledger, catalog):
    catalog["customers"][0]["name"] = "n" * 20_000_000
    catalog["customers"].append({"uuid": UNKNOWN, "name": "A new customer"})
    assert problems(ledger, json.dumps(catalog)) == ["$.customers[0].name: Longer than maximum length 150."]
    assert ledger.conn.execute("SELECT COUNT(*) FROM customers WHERE uuid = ?", (UNKNOWN,)).fetchone() == (0,)


def test_a_huge_limit_amount_is_refused(ledger, catalog):
    catalog["offerings"][0]["components"][2]["limit_amount"] = "9" * 1_000_000
    assert problems(ledger, json.dumps(catalog)) == [
        "$.offerings[0].components[2].limit_amount: Longer than maximum length 40."
    ]


def test_a_type_error_and_an_unknown_reference_are_named_together_on_a_new_ledger(tmp_path, catalog, now):
    """A fresh ledger knows nothing but the file: an item with a bad field still defines what it names."""
    catalog["users"][0]["is_staff"] = "maybe"
    catalog["customers"][1]["name"] = 7  # the customer is still known by its uuid to what refers to it
    catalog["resources"][0]["offering_uuid"] = UNKNOWN
    path = tmp_path / "fresh.db"
    result = CliRunner().invoke(cli, ["--db", str(path), "catalog", "load", "-"], input=json.dumps(catalog))
    assert result.exit_code == 1
    assert result.output.splitlines()[1:] == [
        "$.customers[1].name: Not a valid string.",
        "$.users[0].is_staff: Not a valid boolean.",
        f"$.resources[0].offering_uuid: unknown offering '{UNKNOWN}'",
    ]
    assert event_count(str(path)) == 0


def test_a_bad_file_changes_nothing_it_names_correctly(ledger, catalog):
    catalog["customers"][1]["name"] = "Renamed"
    catalog["resources"][0]["state"] = "Running"
    problems(ledger, json.dumps(catalog))
    assert ledger.conn.execute("SELECT name FROM customers WHERE uuid = ?", (CLIENT,)).fetchone() == ("Client Org",)


def test_a_username_held_by_another_user_is_rejected(ledger):
    assert problems(ledger, json.dumps({"users": [{"id": 99, "username": "staff"}]})) == [
        "$.users[0].username: 'staff' belongs to user 1"
    ]


def test_a_token_held_by_another_user_is_rejected(ledger):
    assert problems(ledger, json.dumps({"users": [{"id": 99, "username": "new", "token": token("staff")}]})) == [
        "$.users[0].token: this token belongs to another user"
    ]


def test_a_plan_period_of_another_resource_is_rejected(ledger, catalog):
    resource = dict(catalog["resources"][0], uuid="0d0000000000000000000000000000ee", name="copy")
    assert problems(ledger, json.dumps({"resources": [resource]})) == [
        f"$.resources[0].plan_periods[0].uuid: plan period '{PLAN_PERIOD}' belongs to resource '{RESOURCE}'"
    ]


def test_usernames_may_be_swapped_between_users_in_one_file(ledger, catalog):
    catalog["users"][0]["username"], catalog["users"][1]["username"] = "support", "staff"
    load_catalog(ledger, json.dumps(catalog))
    assert ledger.conn.execute("SELECT id, username FROM users WHERE id IN (1, 2) ORDER BY id").fetchall() == [
        (1, "support"), (2, "staff"),
    ]


def test_no_clear_text_token_is_stored(tmp_path, catalog, now):
    path = str(tmp_path / "ledger.db")
    ledger = Ledger(path)
    ledger.init()
    load_catalog(ledger, json.dumps(catalog))
    _, issued = tokens.issue_token(ledger, "stranger")
    stored = raw_bytes(path)  # read while open, so the write-ahead log is still there
    assert tokens.digest(tokens.key(ledger.conn), token("staff")).encode() in stored
    ledger.close()
    for secret in [token(name) for name in USERS] + [issued]:
        assert secret.encode() not in stored
        assert hashlib.sha256(secret.encode()).hexdigest().encode() not in stored


def test_a_catalog_token_authenticates(client):
    assert client.get(LIST, headers=auth("stranger")).status_code == 200


def test_revoking_a_role_removes_access(ledger, client):
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=[usage.UsageItem("cpu", "5")], resource_uuid=RESOURCE))
    assert len(client.get(LIST, headers=auth("project-admin")).get_json()) == 1
    revoke = {"username": "project-admin", "scope": "project", "scope_uuid": PROJECT, "role": "admin", "revoked": True}
    assert appended_by(ledger, json.dumps({"roles": [revoke]})) == [
        ("RoleRevoked", f"role/project-admin/project/{PROJECT}/admin")
    ]
    assert client.get(LIST, headers=auth("project-admin")).get_json() == []


def test_revoking_a_role_never_granted_appends_nothing(ledger):
    revoke = {"username": "stranger", "scope": "project", "scope_uuid": PROJECT, "role": "member", "revoked": True}
    assert appended_by(ledger, json.dumps({"roles": [revoke]})) == []


def test_a_revoked_role_can_be_granted_again(ledger, client):
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=[usage.UsageItem("cpu", "5")], resource_uuid=RESOURCE))
    grant = {"username": "project-admin", "scope": "project", "scope_uuid": PROJECT, "role": "admin"}
    load_catalog(ledger, json.dumps({"roles": [grant | {"revoked": True}]}))
    load_catalog(ledger, json.dumps({"roles": [grant]}))
    assert len(client.get(LIST, headers=auth("project-admin")).get_json()) == 1


def test_the_old_form_of_ledger_token_still_issues_a_working_token(db_path, client):
    result = CliRunner().invoke(cli, ["--db", db_path, "token", "stranger"])
    assert result.exit_code == 0, result.output
    assert "`ledger token stranger` is now `ledger token issue stranger`" in result.stderr
    issued = result.stdout.splitlines()[-1]
    assert client.get(LIST, headers={"Authorization": f"Token {issued}"}).status_code == 200


def test_ledger_token_issue_keeps_only_a_keyed_digest(db_path):
    issued = CliRunner().invoke(cli, ["--db", db_path, "token", "issue", "stranger"]).stdout.splitlines()[-1]
    ledger = Ledger(db_path)
    (kept,) = ledger.conn.execute("SELECT digest FROM tokens WHERE source = 'issued'").fetchone()
    (logged,) = [event.data for event in ledger.store.read() if event.type == "TokenIssued"]
    stored = raw_bytes(db_path)
    assert kept == tokens.digest(tokens.key(ledger.conn), issued) == logged["token_digest"]
    ledger.close()
    assert issued.encode() not in stored


def test_an_issued_token_survives_reloading_the_catalog(db_path, catalog, client):
    issued = CliRunner().invoke(cli, ["--db", db_path, "token", "issue", "stranger"]).stdout.splitlines()[-1]
    catalog["users"][-1]["token"] = "stranger-new-token"
    result = CliRunner().invoke(cli, ["--db", db_path, "catalog", "load", "-"], input=json.dumps(catalog))
    assert result.exit_code == 0, result.output
    assert client.get(LIST, headers={"Authorization": f"Token {issued}"}).status_code == 200
    assert client.get(LIST, headers=auth("stranger")).status_code == 401


def test_ledger_token_for_an_unknown_user_fails(db_path):
    result = CliRunner().invoke(cli, ["--db", db_path, "token", "issue", "nobody"])
    assert result.exit_code != 0
    assert "no user named 'nobody'" in result.output


def test_a_resources_backend_id_reaches_the_catalog_view(ledger, catalog):
    catalog["resources"][0]["backend_id"] = "hpc_alloc_01"
    assert appended_by(ledger, json.dumps(catalog)) == [("ResourceDefined", f"resource/{RESOURCE}")]
    row = ledger.conn.execute("SELECT backend_id FROM resources WHERE uuid = ?", (RESOURCE,)).fetchone()
    assert row == ("hpc_alloc_01",)
    assert [e.schema_version for e in ledger.store.read_stream(f"resource/{RESOURCE}")][-1] == 2
    assert not history.verify(ledger).differences  # a rebuild from the log gives the same backend_id


def test_a_resource_defined_before_backend_ids_is_upcast_and_not_defined_again(tmp_path, catalog, now):
    path = str(tmp_path / "old.db")
    old = Ledger(path)
    old.init()
    catalog["resources"] = [r for r in catalog["resources"] if r["uuid"] == RESOURCE]
    (parsed,) = parse(json.dumps(catalog))[0]["resources"]
    data = {key: value for key, value in parsed.items() if key != "backend_id"}  # a version 1 ResourceDefined
    load_catalog(old, json.dumps({key: value for key, value in catalog.items() if key != "resources"}))
    old.write(lambda: [events.check(NewEvent(f"resource/{RESOURCE}", 1, "ResourceDefined", data,
                                             "2026-01-01T00:00:00Z", schema_version=1))])
    assert appended_by(old, json.dumps(catalog)) == []
    assert old.conn.execute("SELECT backend_id FROM resources").fetchall() == [("",)]
    assert not history.verify(old).differences
    old.close()


def test_a_backend_id_longer_than_255_characters_is_rejected(ledger, catalog):
    catalog["resources"][0]["backend_id"] = "a" * 256
    assert problems(ledger, json.dumps(catalog)) == ["$.resources[0].backend_id: Longer than maximum length 255."]
