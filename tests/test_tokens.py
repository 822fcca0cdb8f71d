"""API tokens: issued, listed, expired and revoked through `ledger token`, kept only as keyed digests."""

import hashlib
import json
import re
import sqlite3
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

import api
from api import create_app
from ledger import demo
from ledger.cli import cli, load_catalog
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import NewEvent, StoredEvent

from .conftest import auth, event_count
from .world import token

LIST = "/api/marketplace-component-usages/"
INVALID = {"detail": "Invalid token."}


def ledger_command(db_path: str, *args: str):
    result = CliRunner().invoke(cli, ["--db", db_path, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def issued(db_path: str, username: str, *options: str) -> tuple[int, str]:
    """(id, token) of a token issued with `ledger token issue`."""
    result = ledger_command(db_path, "token", "issue", username, *options)
    assert result.exit_code == 0, result.output
    *_, first, last = result.stdout.splitlines()
    return int(re.match(r"token (\d+) issued to ", first).group(1)), last


def status(client, key: str) -> int:
    return client.get(LIST, headers={"Authorization": f"Token {key}"}).status_code


def listed(db_path: str, *args: str) -> list[dict]:
    """The rows of `ledger token list`, as dicts of its headers."""
    result = ledger_command(db_path, "token", "list", *args)
    assert result.exit_code == 0, result.output
    header, _, *rows = result.stdout.splitlines()
    names = header.split()
    parsed = [re.split(r"\s{2,}", row.strip()) for row in rows]
    return [dict(zip(names, values + [""] * (len(names) - len(values)))) for values in parsed]


def rebuilt(db_path: str) -> None:
    assert ledger_command(db_path, "rebuild").exit_code == 0


def test_token_issue_prints_the_token_alone_on_its_last_line(db_path, client):
    token_id, key = issued(db_path, "stranger")
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert status(client, key) == 200
    assert token_id > 0


def test_token_list_shows_every_token_without_the_token(db_path, now):
    token_id, key = issued(db_path, "stranger", "--expires", "2026-06-01")
    rows = listed(db_path, "stranger")
    created = "2026-03-15T12:00:00.000000Z"
    assert rows == [
        {"id": rows[0]["id"], "user": "stranger", "origin": "catalog", "created": created, "expires": "never", "revoked": ""},
        {"id": str(token_id), "user": "stranger", "origin": "issued", "created": created,
         "expires": "2026-06-01T00:00:00.000000Z", "revoked": ""},
    ]
    everyone = ledger_command(db_path, "token", "list").stdout
    assert key not in everyone and token("stranger") not in everyone and "hmac" not in everyone
    assert {row["user"] for row in listed(db_path)} >= {"staff", "stranger", "provider-owner"}


def test_token_list_of_an_unknown_user_fails(db_path):
    result = ledger_command(db_path, "token", "list", "nobody")
    assert result.exit_code == 1
    assert "no user named 'nobody'" in result.output


def test_revoking_a_user_revokes_all_their_tokens_and_no_one_elses(db_path, client):
    _, first = issued(db_path, "stranger")
    _, second = issued(db_path, "stranger")
    _, others = issued(db_path, "support")
    result = ledger_command(db_path, "token", "revoke", "stranger")
    assert result.exit_code == 0, result.output
    assert "revoked 3 token(s) of stranger" in result.stdout
    for key in (first, second, token("stranger")):
        response = client.get(LIST, headers={"Authorization": f"Token {key}"})
        assert (response.status_code, response.get_json()) == (401, INVALID)
    assert status(client, others) == status(client, token("support")) == 200
    assert all(row["revoked"] for row in listed(db_path, "stranger"))


def test_revoking_one_token_by_id_leaves_the_others(db_path, client):
    revoked_id, revoked = issued(db_path, "stranger")
    _, kept = issued(db_path, "stranger")
    assert ledger_command(db_path, "token", "revoke", "stranger", "--id", str(revoked_id)).exit_code == 0
    assert status(client, revoked) == 401
    assert status(client, kept) == status(client, token("stranger")) == 200


def test_revoking_again_appends_nothing(db_path):
    assert ledger_command(db_path, "token", "revoke", "stranger").exit_code == 0
    before = event_count(db_path)
    result = ledger_command(db_path, "token", "revoke", "stranger")
    assert result.exit_code == 0
    assert "stranger holds no live token: nothing revoked" in result.stdout
    assert event_count(db_path) == before


@pytest.mark.parametrize("whose", ["another user's", "unknown"])
def test_revoking_a_token_the_user_does_not_hold_fails_and_changes_nothing(db_path, client, whose):
    token_id, key = issued(db_path, "support")
    before = event_count(db_path)
    result = ledger_command(db_path, "token", "revoke", "stranger", "--id", str(token_id if whose != "unknown" else 99999))
    assert result.exit_code == 1
    assert "holds no live token" in result.output
    assert event_count(db_path) == before and status(client, key) == 200


def test_an_expired_token_is_invalid_while_others_keep_working(db_path, client, now):
    _, expiring = issued(db_path, "stranger", "--expires", "2026-03-20T00:00:00Z")
    _, lasting = issued(db_path, "stranger", "--expires", "30d")
    assert status(client, expiring) == status(client, lasting) == 200
    now("2026-03-20T00:00:00Z")
    response = client.get(LIST, headers={"Authorization": f"Token {expiring}"})
    assert (response.status_code, response.get_json()) == (401, INVALID)
    assert status(client, lasting) == status(client, token("stranger")) == 200


@pytest.mark.parametrize("expires", ["2026-03-15T12:00:00Z", "2020-01-01"])
def test_a_token_cannot_be_issued_already_expired(db_path, now, expires):
    before = event_count(db_path)
    result = ledger_command(db_path, "token", "issue", "stranger", "--expires", expires)
    assert result.exit_code == 1
    assert "is not in the future" in result.output
    assert event_count(db_path) == before


def test_an_expiry_that_is_not_a_time_is_a_usage_error(db_path):
    result = ledger_command(db_path, "token", "issue", "stranger", "--expires", "soon")
    assert result.exit_code == 2
    assert "neither an ISO date or datetime nor a number of days" in result.output


def test_revocation_and_expiry_survive_a_rebuild(db_path, client, now):
    revoked_id, revoked = issued(db_path, "stranger")
    _, expiring = issued(db_path, "stranger", "--expires", "2026-03-16")
    _, kept = issued(db_path, "stranger")
    ledger_command(db_path, "token", "revoke", "stranger", "--id", str(revoked_id))
    ledger_command(db_path, "token", "revoke", "support")
    before = listed(db_path)
    rebuilt(db_path)
    assert listed(db_path) == before
    now("2026-03-17T00:00:00Z")
    assert [status(client, key) for key in (revoked, expiring, kept, token("support"), token("staff"))] == [
        401, 401, 200, 401, 200,
    ]
    assert ledger_command(db_path, "verify").exit_code == 0


def test_a_revoked_catalog_token_stays_revoked_when_the_catalog_is_loaded_again(db_path, catalog, client):
    ledger_command(db_path, "token", "revoke", "stranger")
    catalog["users"][-1]["is_support"] = True  # the user changes, the token does not
    result = CliRunner().invoke(cli, ["--db", db_path, "catalog", "load", "-"], input=json.dumps(catalog))
    assert result.exit_code == 0, result.output
    assert status(client, token("stranger")) == 401
    catalog["users"][-1]["token"] = "stranger-next-token"
    CliRunner().invoke(cli, ["--db", db_path, "catalog", "load", "-"], input=json.dumps(catalog))
    assert status(client, "stranger-next-token") == 200


def test_a_revocation_by_the_cli_reaches_a_running_server(db_path, live_server):
    _, key = issued(db_path, "stranger")

    def answer(secret: str) -> tuple[int, dict]:
        request = urllib.request.Request(f"{live_server}{LIST}", headers={"Authorization": f"Token {secret}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    for _ in range(4):  # every worker has seen (and cached) the token
        assert answer(key)[0] == 200
    assert ledger_command(db_path, "token", "revoke", "stranger").exit_code == 0
    for _ in range(4):
        assert answer(key) == (401, INVALID)
        assert answer(token("stranger")) == (401, INVALID)
    assert answer(token("support"))[0] == 200


def test_demo_runs_leave_one_live_staff_token_that_expires(tmp_path, now):
    ledger = Ledger(str(tmp_path / "demo.db"))
    ledger.init()
    load_catalog(ledger, demo.catalog_text())
    keys = [demo.staff_token(ledger), demo.staff_token(ledger)]
    ledger.close()
    rows = listed(str(tmp_path / "demo.db"), demo.staff_username())
    assert [bool(row["revoked"]) for row in rows] == [True, False]
    assert rows[-1]["expires"] == "2026-03-22T12:00:00.000000Z"
    assert keys[0] != keys[1]


def legacy_ledger(path: str) -> None:
    """A ledger as an older release wrote it: tokens as plain SHA-256 in version-1 events, and a
    tokens view keyed by that digest."""
    ledger = Ledger(path)
    ledger.init()
    sha256 = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    user = {"id": 1, "username": "staff", "is_staff": True, "is_support": False, "token_sha256": sha256("old-catalog")}
    ledger.write(lambda: [
        NewEvent("user/1", 1, "UserDefined", user, "2026-03-01T00:00:00.000000Z", schema_version=1),
        NewEvent("token/1", 1, "TokenIssued", {"user_id": 1, "token_sha256": sha256("old-issued")},
                 "2026-03-01T00:00:00.000000Z", schema_version=1),
    ])
    ledger.conn.execute("DROP TABLE tokens")
    ledger.conn.execute("CREATE TABLE tokens (token_sha256 TEXT PRIMARY KEY, user_id INTEGER, source TEXT)")
    ledger.conn.execute("INSERT INTO tokens VALUES (?, 1, 'catalog'), (?, 1, 'issued')",
                        (sha256("old-catalog"), sha256("old-issued")))
    ledger.close()


def test_an_older_ledgers_tokens_keep_working_and_can_be_revoked(tmp_path, now):
    path = str(tmp_path / "old.db")
    legacy_ledger(path)
    app = create_app({"DATABASE": path, "TESTING": True, "ROLLOVER_SECONDS": 0})
    client = app.test_client()
    try:
        assert status(client, "old-catalog") == status(client, "old-issued") == 200
        assert ledger_command(path, "verify").exit_code == 0
        assert [row["origin"] for row in listed(path)] == ["catalog", "issued"]
        ledger_command(path, "token", "revoke", "staff")
        assert status(client, "old-catalog") == status(client, "old-issued") == 401
    finally:
        api.close(app)
    conn = sqlite3.connect(path)
    kinds = conn.execute("SELECT type, schema_version FROM events WHERE stream IN ('user/1', 'token/1') ORDER BY seq").fetchall()
    conn.close()
    assert kinds[:2] == [("UserDefined", 1), ("TokenIssued", 1)]  # upcast when read, never rewritten


def test_old_token_events_are_upcast_to_digests_marked_sha256():
    stored = events.upgrade(stored_event("TokenIssued", {"user_id": 1, "token_sha256": "ab" * 32}))
    assert stored.data == {"user_id": 1, "token_digest": "sha256:" + "ab" * 32, "expires_at": None}
    assert stored.schema_version == events.CURRENT_VERSION["TokenIssued"]


def test_an_import_into_a_new_database_brings_no_working_token(db_path, tmp_path, catalog, now):
    """The key stays with its database: a copy made from an export needs its tokens again (the catalog
    loaded again, or tokens issued), and then they work."""
    exported, copy = tmp_path / "log.jsonl", str(tmp_path / "copy.db")
    _, key = issued(db_path, "stranger")
    assert ledger_command(db_path, "export", "--output", str(exported)).exit_code == 0
    assert ledger_command(copy, "import", str(exported)).exit_code == 0
    app = create_app({"DATABASE": copy, "TESTING": True, "ROLLOVER_SECONDS": 0})
    client = app.test_client()
    try:
        assert status(client, key) == status(client, token("staff")) == 401
        load = CliRunner().invoke(cli, ["--db", copy, "catalog", "load", "-"], input=json.dumps(catalog))
        assert load.exit_code == 0, load.output
        assert client.get(LIST, headers=auth("staff")).status_code == 200
    finally:
        api.close(app)


def stored_event(event_type: str, data: dict) -> StoredEvent:
    return StoredEvent(1, "e" * 32, "token/1", 1, event_type, 1, "2026-03-01T00:00:00.000000Z",
                       "2026-03-01T00:00:00.000000Z", None, data, "0" * 64, "0" * 64)
