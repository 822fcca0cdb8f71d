"""What a caller learns of what they may not read: nothing more than of what does not exist."""

import uuid

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_user_usages import marketplace_component_user_usages_list

from ledger.log import events

from .conftest import auth
from .serving import LedgerServer
from .world import (
    ERRED_PLAN_PERIOD,
    ERRED_RESOURCE,
    NON_READERS,
    OFFERING_USER,
    OTHER_OFFERING,
    OTHER_PLAN_PERIOD,
    OTHER_RESOURCE,
    PLANLESS_RESOURCE,
    RESOURCE,
    token,
)

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
OTHER_OFFERING_USER = "0f000000000000000000000000000002"
RECORD = events.usage_record_uuid(RESOURCE, "cpu", "2026-03-01")


@pytest.fixture
def catalog(catalog):
    """The test catalog with an offering user of the other offering."""
    catalog["offering_users"].append(
        {"uuid": OTHER_OFFERING_USER, "offering_uuid": OTHER_OFFERING, "username": "bob", "user_id": None})
    return catalog


def answer(client, body: dict, user: str) -> tuple[int, dict]:
    response = client.post(SET_USAGE, json=body, headers=auth(user))
    return response.status_code, response.get_json()


def bodies(field: str, value: str) -> list[dict]:
    """Requests naming `value` in `field` with each other thing wrong, and with nothing else wrong."""
    return [
        {field: value, "usages": [{"type": "cpu", "amount": "1"}]},
        {field: value, "usages": [{"type": "nodes", "amount": "1"}, {"type": "gpu", "amount": "1"}]},
        {field: value, "usages": [{"type": "cpu", "amount": "1.001"}]},
        {field: value, "date": "2026-01-01T00:00:00Z", "usages": [{"type": "cpu", "amount": "1"}]},
        {field: value, "date": "2027-01-01T00:00:00Z", "usages": [{"type": "cpu", "amount": "1"}]},
        {field: value, "date": "not a date", "usages": "none"},
    ]


# Who may not read what: the first project's resources are hidden from every non-reader; the other
# project's from all but its customer's owner.
UNREADABLE = [
    *((user, field, value) for user in NON_READERS for field, value in (
        ("resource", RESOURCE), ("resource", ERRED_RESOURCE), ("resource", PLANLESS_RESOURCE),
        ("plan_period", ERRED_PLAN_PERIOD))),
    *((user, field, value) for user in ("consumer-manager", "stranger", "project-admin")
      for field, value in (("resource", OTHER_RESOURCE), ("plan_period", OTHER_PLAN_PERIOD))),
]


@pytest.mark.parametrize("user, field, value", UNREADABLE)
def test_set_usage_answers_a_caller_who_may_not_read_the_resource_as_for_an_unknown_one(client, ledger, user, field, value):
    before = ledger.store.count()
    missing = uuid.uuid4().hex
    for body in bodies(field, value):
        response = client.post(SET_USAGE, json=body, headers=auth(user))
        unknown = client.post(SET_USAGE, json={**body, field: missing}, headers=auth(user))
        assert (response.status_code, response.get_data(as_text=True)) == (
            unknown.status_code, unknown.get_data(as_text=True).replace(missing, value))
    assert answer(client, bodies(field, value)[0], user) == (400, {field: [f"Object with uuid={value} does not exist."]})
    assert ledger.store.count() == before


def test_set_usage_answers_a_reader_who_may_not_write_in_the_usual_order(client):
    assert answer(client, {"resource": ERRED_RESOURCE, "usages": []}, "project-member") == (
        400, {"resource": ["Resource is not in valid state."]})
    assert answer(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1"}]}, "project-member")[0] == 403


@pytest.fixture
def record(client):
    body = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1"}]}
    assert client.post(SET_USAGE, json=body, headers=auth("staff")).status_code == 201
    return RECORD


@pytest.mark.parametrize("action, wrap", [("set_user_usage", lambda item: item),
                                          ("set_user_usages", lambda item: {"usages": [item]})])
def test_another_offerings_user_is_refused_in_the_words_for_an_unknown_one(client, ledger, record, action, wrap):
    before = ledger.store.count()

    def post(offering_user: str):
        item = {"username": "bob", "user": f"http://x/api/marketplace-offering-users/{offering_user}/"}
        response = client.post(f"/api/marketplace-component-usages/{record}/{action}/", json=wrap(item),
                               headers=auth("staff"))
        return response.status_code, response.get_json()

    foreign, unknown = post(OTHER_OFFERING_USER), post(uuid.uuid4().hex)
    assert foreign == unknown
    assert foreign[0] == 400
    assert ledger.store.count() == before
    assert post(OFFERING_USER)[0] == 201


def share_with_link(client, record):
    item = {"username": "alice", "user": f"http://x/api/marketplace-offering-users/{OFFERING_USER}/"}
    response = client.post(f"/api/marketplace-component-usages/{record}/set_user_usage/", json=item, headers=auth("staff"))
    assert response.status_code == 201


def test_links_are_built_from_the_configured_base_url_not_the_hosts_header(client, record, monkeypatch):
    monkeypatch.setenv("LEDGER_BASE_URL", "https://ledger.example.org/")
    share_with_link(client, record)
    for _ in range(11):
        client.post(SET_USAGE, json={"resource": RESOURCE, "usages": [{"type": "ram", "amount": "1"}]},
                    headers=auth("staff"))
    evil = {**auth("staff"), "Host": "evil.example.com", "X-Forwarded-Host": "evil.example.com"}
    listed = client.get("/api/marketplace-component-user-usages/", headers=evil)
    entry = listed.get_json()[0]
    assert entry["user"] == f"https://ledger.example.org/api/marketplace-offering-users/{OFFERING_USER}/"
    assert entry["component_usage"] == f"https://ledger.example.org/api/marketplace-component-usages/{record}/"
    retrieved = client.get(f"/api/marketplace-component-user-usages/{entry['uuid']}/", headers=evil).get_json()
    assert retrieved["component_usage"] == entry["component_usage"]
    links = client.get("/api/marketplace-component-usages/?page_size=1", headers=evil).headers["Link"]
    assert "evil" not in links
    assert '<https://ledger.example.org/api/marketplace-component-usages/?page_size=1&page=2>; rel="next"' in links


def test_the_site_agents_objects_link_under_the_configured_base_url(client, monkeypatch):
    monkeypatch.setenv("LEDGER_BASE_URL", "https://ledger.example.org/")
    evil = {**auth("staff"), "Host": "evil.example.com"}
    for path in ("/api/marketplace-provider-resources/", "/api/marketplace-provider-offerings/",
                 "/api/marketplace-offering-users/", "/api/marketplace-service-providers/"):
        (first, *_) = client.get(path, headers=evil).get_json()
        assert first["url"].startswith(f"https://ledger.example.org{path}"), path


def test_without_a_base_url_links_follow_the_request(client, record):
    share_with_link(client, record)
    entry = client.get("/api/marketplace-component-user-usages/", headers=auth("staff")).get_json()[0]
    assert entry["component_usage"] == f"http://localhost/api/marketplace-component-usages/{record}/"


def test_waldur_api_client_reads_links_under_the_base_url(db_path, record, client, monkeypatch):
    share_with_link(client, record)
    monkeypatch.setenv("LEDGER_BASE_URL", "https://ledger.example.org")
    with LedgerServer(db_path) as server:
        with AuthenticatedClient(base_url=server.url, token=token("staff")) as api_client:
            listed = marketplace_component_user_usages_list.sync(client=api_client)
    assert [str(entry.component_usage) for entry in listed] == [
        f"https://ledger.example.org/api/marketplace-component-usages/{record}/"]
