"""Security: tokens only as hashes, compared in constant time; nothing of one customer shown to another.

The leak tests run once per user of the test world against usage records in two client
organisations' resources (one per client, both offered by the same provider), and check every
way of reading: lists with each filter and ordering, counts (GET and HEAD), retrieval, and the
errors of the write endpoints.
"""

import hashlib
import hmac
import json
import sqlite3
import uuid

import pytest
from click.testing import CliRunner

import api
from api import create_app
from ledger.cli import cli, load_catalog
from ledger.commands import tokens
from ledger.database import Ledger
from projections import catalog as catalog_view

from .conftest import auth
from .world import (
    CLIENT,
    NON_READERS,
    OFFERING,
    OTHER_CLIENT,
    OTHER_OFFERING,
    OTHER_PROJECT,
    OTHER_RESOURCE,
    PROJECT,
    READERS,
    RESOURCE,
    USERS,
    token,
)

USAGES = "/api/marketplace-component-usages/"
USER_USAGES = "/api/marketplace-component-user-usages/"
SET_USAGE = f"{USAGES}set_usage/"
BOTH = {RESOURCE, OTHER_RESOURCE}
# Which of the two resources each user may read (the read rules in the README).
VISIBLE = {
    "staff": BOTH, "support": BOTH, "provider-owner": BOTH, "provider-manager": BOTH,
    "offering-manager": {RESOURCE}, "consumer-owner": {RESOURCE}, "consumer-manager": set(),
    "project-admin": {RESOURCE}, "project-manager": {RESOURCE}, "project-member": {RESOURCE},
    "other-owner": {OTHER_RESOURCE}, "stranger": set(),
}
PARTIAL_READERS = [user for user in USERS if VISIBLE[user] != BOTH]
# What each resource's records carry that nobody else should ever be shown.
SECRETS = {
    RESOURCE: ("alloc-01", "Climate", "Client Org", "11.11", "client-note", "alice-client"),
    OTHER_RESOURCE: ("alloc-02", "Genomics", "Other Org", "77.77", "other-note", "bob-other"),
}
OTHERS = {RESOURCE: OTHER_RESOURCE, OTHER_RESOURCE: RESOURCE}


@pytest.fixture
def records(client) -> dict[str, dict[str, list[str]]]:
    """Usage and user usage records of both resources: resource -> {"usage": [uuids], "user_usage": [uuids]}."""
    staff = auth("staff")
    for resource, (_, _, _, amount, note, username) in SECRETS.items():
        report = {"resource": resource, "usages": [
            {"type": "cpu", "amount": amount, "description": note, "missing_usage_policy": "reuse"}]}
        assert client.post(SET_USAGE, json=report, headers=staff).status_code == 201
        (record,) = client.get(USAGES, query_string={"resource_uuid": resource}, headers=staff).get_json()
        url = f"{USAGES}{record['uuid']}/set_user_usage/"
        assert client.post(url, json={"username": username, "usage": amount}, headers=staff).status_code == 201
    found = {resource: {"usage": [], "user_usage": []} for resource in SECRETS}
    for kind, url in (("usage", USAGES), ("user_usage", USER_USAGES)):
        for record in client.get(url, headers=staff).get_json():
            found[record["resource_uuid"]][kind].append(record["uuid"])
    return found


def shown_resources(client, url: str, user: str, **params) -> tuple[list[str], int]:
    """The resources of the records a user is shown, and the count the list claims."""
    response = client.get(url, query_string={"page_size": 300, **params}, headers=auth(user))
    assert response.status_code == 200, response.get_json()
    return [record["resource_uuid"] for record in response.get_json()], int(response.headers["X-Result-Count"])


def test_a_wrong_token_of_the_same_length_is_401(client):
    wrong = "x" * len(token("staff"))
    response = client.get(USAGES, headers={"Authorization": f"Token {wrong}"})
    assert (response.status_code, response.get_json()) == (401, {"detail": "Invalid token."})


def test_a_token_differing_only_in_its_last_character_is_401(client):
    almost = token("staff")[:-1] + chr(ord(token("staff")[-1]) + 1)
    response = client.get(USAGES, headers={"Authorization": f"Token {almost}"})
    assert (response.status_code, response.get_json()) == (401, {"detail": "Invalid token."})


def test_an_invalid_token_is_not_echoed(client):
    response = client.get(USAGES, headers={"Authorization": "Token guess-1234"})
    assert b"guess-1234" not in response.data


def test_tokens_are_compared_in_constant_time(client, ledger, monkeypatch):
    compared, constant_time = [], hmac.compare_digest

    def compare_digest(a, b):
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(catalog_view.hmac, "compare_digest", compare_digest)
    assert client.get(USAGES, headers=auth("staff")).status_code == 200
    assert compared == [(tokens.digest(tokens.key(ledger.conn), token("staff")),) * 2]


def test_tokens_are_looked_up_by_their_hash_only(ledger):
    """The lookup itself sees only digests, so its timing can tell nothing about a token."""
    statements = []
    ledger.conn.set_trace_callback(statements.append)
    catalog_view.token_holder(ledger.conn, tokens.digests(tokens.key(ledger.conn), token("staff")))
    ledger.conn.set_trace_callback(None)
    assert statements and not any(token("staff") in statement for statement in statements)


def test_the_visibility_table_agrees_with_the_test_world():
    assert {user for user in USERS if RESOURCE in VISIBLE[user]} == set(READERS)
    assert not {user for user in NON_READERS if RESOURCE in VISIBLE[user]}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("url", [USAGES, USER_USAGES])
def test_lists_show_a_user_only_the_records_they_may_read(client, records, url, user):
    shown, count = shown_resources(client, url, user)
    assert set(shown) == VISIBLE[user]
    assert count == len(shown)


ORDERINGS = {USAGES: ("usage", "-billing_period", "missing_usage_policy"),
             USER_USAGES: ("-usage", "username", "component_usage__billing_period")}


def leak_queries(url: str) -> list[dict]:
    """A query per filter and ordering of the list at `url`, each aimed at either resource where it names one."""
    queries = [{}, {"type": "cpu"}, {"billing_period": "2026-03-01"}, {"billing_period_month": "3"},
               {"billing_period_year": "2026"}, {"date_after": "2026-01-01"}, {"date_before": "2026-12-31"},
               {"missing_usage_policy": "reuse"}, {"field": ["resource_uuid", "usage"]}, {"page_size": "1"}]
    queries += [{"o": order} for order in ORDERINGS[url]]
    for resource, project, customer, offering in ((RESOURCE, PROJECT, CLIENT, OFFERING),
                                                  (OTHER_RESOURCE, OTHER_PROJECT, OTHER_CLIENT, OTHER_OFFERING)):
        queries += [{"resource_uuid": resource},
                    {"resource": f"http://localhost/api/marketplace-resources/{resource}/"},
                    {"project_uuid": project}, {"customer_uuid": customer}, {"offering_uuid": offering},
                    {"offering_uuid": offering, "type": "cpu", "o": ORDERINGS[url][0]}]
    return queries


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("url", [USAGES, USER_USAGES])
def test_no_filter_or_ordering_shows_or_counts_a_record_the_user_may_not_read(client, records, url, user):
    for query in leak_queries(url):
        response = client.get(url, query_string={"page_size": 300, **query}, headers=auth(user))
        assert response.status_code == 200, (query, response.get_json())
        shown = {record.get("resource_uuid") for record in response.get_json()}
        assert shown <= VISIBLE[user], query
        assert int(response.headers["X-Result-Count"]) <= len(VISIBLE[user]), query
        head = client.head(url, query_string={"page_size": 300, **query}, headers=auth(user))
        assert head.headers["X-Result-Count"] == response.headers["X-Result-Count"], query


@pytest.mark.parametrize("user", USERS)
def test_the_username_filter_shows_only_readable_user_usages(client, records, user):
    for resource, secrets in SECRETS.items():
        response = client.get(USER_USAGES, query_string={"username": secrets[-1][:5]}, headers=auth(user))
        shown = {record["resource_uuid"] for record in response.get_json()}
        assert shown == VISIBLE[user] & {resource}
        assert int(response.headers["X-Result-Count"]) == len(shown)


def unreadable(records, user: str) -> list[tuple[str, str]]:
    """(kind, uuid) of each record the user may not read."""
    return [(kind, uuid) for resource in BOTH - VISIBLE[user] for kind, uuids in records[resource].items()
            for uuid in uuids]


def missing_answer(client, method: str, url: str, user: str, **kwargs):
    response = client.open(url, method=method, headers=auth(user), **kwargs)
    return response.status_code, response.data


@pytest.mark.parametrize("user", PARTIAL_READERS)
def test_an_unreadable_record_answers_exactly_like_a_missing_one(client, records, user):
    missing = uuid.uuid4().hex
    for kind, record in unreadable(records, user):
        base = USAGES if kind == "usage" else USER_USAGES
        paths = [f"{record}/"] + ([f"{record}/history/"] if kind == "usage" else [])
        for path in paths:
            assert missing_answer(client, "GET", base + path, user) == missing_answer(
                client, "GET", base + path.replace(record, missing), user)
        if kind == "usage":
            for action, body in (("set_user_usage", {"username": "x"}), ("set_user_usages", {"usages": []})):
                assert missing_answer(client, "POST", f"{USAGES}{record}/{action}/", user, json=body) == (
                    missing_answer(client, "POST", f"{USAGES}{missing}/{action}/", user, json=body))


@pytest.mark.parametrize("user", PARTIAL_READERS)
def test_errors_of_set_usage_name_nothing_of_a_resource_the_user_may_not_read(client, records, ledger, user):
    before = ledger.store.count()
    for resource in BOTH - VISIBLE[user]:
        bodies = [
            {"resource": resource, "usages": [{"type": "cpu", "amount": "1"}]},
            {"resource": resource, "usages": [{"type": "nodes", "amount": "1"}, {"type": "gpu", "amount": "1"}]},
            {"resource": resource, "usages": [{"type": "cpu", "amount": "1.001"}]},
            {"resource": resource, "date": "2026-01-01T00:00:00Z", "usages": [{"type": "cpu", "amount": "1"}]},
        ]
        for body in bodies:
            response = client.post(SET_USAGE, json=body, headers=auth(user))
            assert response.status_code in (400, 403)
            assert not [secret for secret in SECRETS[resource] if secret in response.get_data(as_text=True)]
    assert ledger.store.count() == before


@pytest.mark.parametrize("user", USERS)
def test_records_of_one_resource_carry_nothing_of_the_other(client, records, user):
    for url in (USAGES, USER_USAGES):
        for record in client.get(url, query_string={"page_size": 300}, headers=auth(user)).get_json():
            text = str(record)
            assert not [secret for secret in SECRETS[OTHERS[record["resource_uuid"]]] if secret in text]


def test_counts_are_never_taken_from_another_ledgers_lists(tmp_path, catalog, now):
    """Two ledgers at the same log position in one process, asked the same question, count their own records."""
    answers = []
    for name, resources in (("a", [RESOURCE, RESOURCE]), ("b", [RESOURCE, OTHER_RESOURCE])):
        path = str(tmp_path / f"{name}.db")
        ledger = Ledger(path)
        ledger.init()
        load_catalog(ledger, json.dumps(catalog))
        ledger.close()
        app = create_app({"DATABASE": path, "ROLLOVER_SECONDS": 0})
        client = app.test_client()
        for resource in resources:
            client.post(SET_USAGE, json={"resource": resource, "usages": [{"type": "cpu", "amount": "1"}]},
                        headers=auth("staff"))
        answers.append(shown_resources(client, USAGES, "staff", resource_uuid=OTHER_RESOURCE))
        api.close(app)
    assert answers == [([], 0), ([OTHER_RESOURCE], 1)]


def test_an_export_holds_no_token_nor_any_plain_digest_of_one(db_path):
    """Only digests keyed by the database's own key, which no export carries: nothing to test guesses against."""
    runner = CliRunner()
    issued = runner.invoke(cli, ["--db", db_path, "token", "issue", "stranger"])
    assert issued.exit_code == 0, issued.output
    key = issued.stdout.splitlines()[-1]
    exported = runner.invoke(cli, ["--db", db_path, "export"])
    assert exported.exit_code == 0, exported.output
    secrets = [token(user) for user in USERS] + [key]
    text = exported.stdout.lower()
    assert not [secret for secret in secrets if secret in exported.stdout]
    for algorithm in ("md5", "sha1", "sha256", "sha512"):
        assert not [s for s in secrets if hashlib.new(algorithm, s.encode()).hexdigest() in text], algorithm
    ledger = Ledger(db_path)
    keyed = [tokens.digest(tokens.key(ledger.conn), secret) for secret in secrets]
    ledger.close()
    assert all(digest in exported.stdout for digest in keyed)
    conn = sqlite3.connect(db_path)
    assert tokens.key(conn).hex() not in text
    conn.close()
