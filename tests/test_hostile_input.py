"""Hostile requests: every one is answered 4xx with a JSON body, never 5xx, and writes nothing."""

import contextlib
import json

import pytest

import api
from api import create_app

from .conftest import ON_BOTH_BACKENDS, auth
from .world import PLAN_PERIOD, RESOURCE

pytestmark = ON_BOTH_BACKENDS

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
USAGES = "/api/marketplace-component-usages/"
USER_USAGES = "/api/marketplace-component-user-usages/"
SQL = "'; DROP TABLE events; --"
INJECTED = "x' OR '1'='1"
MIB = 1024 * 1024
VALID_REPORT = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]}


@pytest.fixture
def record(client):
    """The uuid of a usage record, for the user usage endpoints; reported before each test counts its events."""
    assert client.post(SET_USAGE, json=VALID_REPORT, headers=auth("staff")).status_code == 201
    return client.get(USAGES, headers=auth("staff")).get_json()[0]["uuid"]


@pytest.fixture
def post_urls(record):
    return [SET_USAGE, f"{USAGES}{record}/set_user_usage/", f"{USAGES}{record}/set_user_usages/"]


@contextlib.contextmanager
def nothing_written(ledger):
    """Asserts that the block appends nothing to the log."""
    before = ledger.store.count()
    yield
    assert ledger.store.count() == before


def refused(response, status: int | None = None) -> dict | list:
    """The JSON body of a 4xx answer (the given status, if any)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.data[:300])
    if status is not None:
        assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    return json.loads(response.data)


def post_raw(client, url: str, data: bytes, user: str = "staff"):
    return client.post(url, data=data, headers={**auth(user), "Content-Type": "application/json"})


def test_body_over_the_limit_is_413_with_a_json_body(client, ledger, post_urls):
    with nothing_written(ledger):
        for url in post_urls:
            body = refused(post_raw(client, url, b" " * MIB + b"{}"), 413)
            assert body == {"detail": "Request body is too large."}


def test_a_report_just_under_the_limit_is_accepted(client, ledger):
    text = json.dumps(VALID_REPORT).encode()
    before = ledger.store.count()
    assert post_raw(client, SET_USAGE, text + b" " * (MIB - len(text))).status_code == 201
    assert ledger.store.count() == before + 1


def test_ledger_max_body_sets_the_limit(db_path, monkeypatch):
    monkeypatch.setenv("LEDGER_MAX_BODY", "100")
    app = create_app({"DATABASE": db_path, "ROLLOVER_SECONDS": 0})
    client = app.test_client()
    text = json.dumps(VALID_REPORT).encode()
    assert post_raw(client, SET_USAGE, text).status_code == 201
    refused(post_raw(client, SET_USAGE, text + b" " * 100), 413)
    api.close(app)


@pytest.mark.parametrize("text", [b"[" * 100_000, b'{"usages": ' * 50_000, b'{"a": [' * 50_000])
def test_json_nested_beyond_the_parser_is_400(client, ledger, post_urls, text):
    with nothing_written(ledger):
        for url in post_urls:
            assert refused(post_raw(client, url, text), 400)["detail"].startswith("JSON parse error")


@pytest.mark.parametrize("text", [
    b"\xff\xfe\xfd", b'{"usages": "\xc3\x28"}', "{}".encode("utf-16"), b'{"usages": [], "resource": "\xed\xa0\x80"}',
])
def test_body_that_is_not_utf8_is_400(client, ledger, post_urls, text):
    with nothing_written(ledger):
        for url in post_urls:
            refused(post_raw(client, url, text), 400)


def test_lone_surrogate_escapes_are_400(client, ledger, post_urls):
    report = json.dumps({**VALID_REPORT, "usages": [{"type": "cpu", "amount": "1", "description": "\ud800"}]})
    user_usage = json.dumps({"username": "\udc00", "usage": "1"})
    with nothing_written(ledger):
        for url, text in zip(post_urls, [report, user_usage, json.dumps({"usages": [json.loads(user_usage)]})]):
            refused(post_raw(client, url, text.encode()), 400)
            refused(post_raw(client, url, text.encode("utf-16")), 400)  # json.loads reads UTF-16 too


@pytest.mark.parametrize("field", ["type", "amount", "description", "missing_usage_policy"])
def test_huge_strings_in_a_usage_item_are_400(client, ledger, field):
    item = {"type": "cpu", "amount": "1", field: "9" * 900_000}
    with nothing_written(ledger):
        refused(client.post(SET_USAGE, json={"resource": RESOURCE, "usages": [item]}, headers=auth("staff")), 400)


@pytest.mark.parametrize("field", ["resource", "plan_period", "date"])
def test_huge_strings_in_a_report_are_400(client, ledger, field):
    with nothing_written(ledger):
        refused(client.post(SET_USAGE, json={**VALID_REPORT, field: "9" * 900_000}, headers=auth("staff")), 400)


@pytest.mark.parametrize("field", ["username", "usage", "user", "date"])
def test_huge_strings_in_a_user_usage_are_400(client, ledger, record, field):
    body = {"username": "alice", "usage": "1", field: "9" * 900_000}
    with nothing_written(ledger):
        refused(client.post(f"{USAGES}{record}/set_user_usage/", json=body, headers=auth("staff")), 400)


NOT_TEXT = [None, True, [], {}, [SQL], {"a": SQL}]
WRONG_REPORT_VALUES = {
    "usages": [None, True, 1, "cpu", {}, {"type": "cpu", "amount": "1"}],
    "resource": [None, True, 1, 1.5, [], {}, "cpu", [RESOURCE]],
    "plan_period": [None, True, 1, [], {}, "cpu", [PLAN_PERIOD]],
    "date": [None, True, 1, 1.5, [], {}, "yesterday", "2026-13-01T00:00:00Z", "9999-12-31T23:59:59-23:59"],
}
WRONG_ITEM_VALUES = {
    "item": [None, True, 1, "cpu", []],
    "type": [*NOT_TEXT, 1, 1.5, ""],
    "amount": [*NOT_TEXT, "", "five", "1.234", "1e400", "NaN", "-Infinity", 10**30, 1e308],
    "description": NOT_TEXT,
    "missing_usage_policy": [None, True, 1, [], {}, "", "REUSE", "reuse "],
    "recurring": ["maybe", 2, [], {}],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, values in WRONG_REPORT_VALUES.items() for v in values])
def test_wrong_types_in_a_report_are_400(client, ledger, field, value):
    with nothing_written(ledger):
        refused(client.post(SET_USAGE, json={**VALID_REPORT, field: value}, headers=auth("staff")), 400)


@pytest.mark.parametrize("field, value", [(f, v) for f, values in WRONG_ITEM_VALUES.items() for v in values])
def test_wrong_types_in_a_usage_item_are_400(client, ledger, field, value):
    item = value if field == "item" else {"type": "cpu", "amount": "1", field: value}
    body = {"resource": RESOURCE, "usages": [{"type": "ram", "amount": "2"}, item]}
    with nothing_written(ledger):
        refused(client.post(SET_USAGE, json=body, headers=auth("staff")), 400)


WRONG_USER_USAGE_VALUES = {
    "username": [*NOT_TEXT, ""],
    "usage": [*NOT_TEXT, "", "lots", "0.001", "NaN"],
    "user": [True, 1, [], {}, "cpu", SQL, "http://[::1/api/marketplace-offering-users/x/"],
    "date": [None, True, 1, [], {}, "soon", "9999-12-31T23:59:59-23:59"],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, values in WRONG_USER_USAGE_VALUES.items() for v in values])
def test_wrong_types_in_a_user_usage_are_400(client, ledger, record, field, value):
    item = {"username": "alice", "usage": "1", field: value}
    with nothing_written(ledger):
        refused(client.post(f"{USAGES}{record}/set_user_usage/", json=item, headers=auth("staff")), 400)
        refused(client.post(f"{USAGES}{record}/set_user_usages/", json={"usages": [item]}, headers=auth("staff")), 400)


@pytest.mark.parametrize("body", [None, True, 1, "usages", [], [{"username": "alice"}], {"usages": {}}])
def test_bodies_of_the_wrong_shape_are_400(client, ledger, post_urls, body):
    with nothing_written(ledger):
        for url in post_urls:
            refused(post_raw(client, url, json.dumps(body).encode()), 400)


@pytest.mark.parametrize("field", ["type", "amount", "missing_usage_policy"])
def test_sql_in_a_usage_item_is_400(client, ledger, field):
    item = {"type": "cpu", "amount": "1", field: SQL}
    with nothing_written(ledger):
        refused(client.post(SET_USAGE, json={"resource": RESOURCE, "usages": [item]}, headers=auth("staff")), 400)


@pytest.mark.parametrize("field", ["resource", "plan_period", "date"])
def test_sql_in_a_report_is_400(client, ledger, field):
    with nothing_written(ledger):
        refused(client.post(SET_USAGE, json={**VALID_REPORT, field: SQL}, headers=auth("staff")), 400)


def test_sql_in_a_description_is_kept_as_text(client, ledger):
    report = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1", "description": SQL}]}
    assert client.post(SET_USAGE, json=report, headers=auth("staff")).status_code == 201
    (record,) = client.get(USAGES, query_string={"type": "cpu"}, headers=auth("staff")).get_json()
    assert record["description"] == SQL
    assert ledger.store.verify_chain() == ledger.store.count()


def test_sql_in_a_username_is_kept_as_text(client, ledger, record):
    url = f"{USAGES}{record}/set_user_usage/"
    assert client.post(url, json={"username": SQL, "usage": "1"}, headers=auth("staff")).status_code == 201
    (user_usage,) = client.get(USER_USAGES, headers=auth("staff")).get_json()
    assert user_usage["username"] == SQL
    assert ledger.store.verify_chain() == ledger.store.count()


# What each query parameter answers when it carries SQL: refused, or matching nothing, or ignored.
SQL_QUERY_ANSWERS = {
    "resource_uuid": 400, "offering_uuid": 400, "project_uuid": 400, "customer_uuid": 400, "resource": 400,
    "billing_period": 400, "billing_period_month": 400, "billing_period_year": 400, "date_after": 400,
    "date_before": 400, "missing_usage_policy": 400, "o": 400, "page": 404, "type": "none", "page_size": "all",
    "field": "all",
}


@pytest.mark.parametrize("url", [USAGES, USER_USAGES])
@pytest.mark.parametrize("param, answer", SQL_QUERY_ANSWERS.items())
@pytest.mark.parametrize("value", [SQL, INJECTED])
def test_sql_in_a_query_parameter_is_refused_or_matches_nothing(client, ledger, record, url, param, value, answer):
    client.post(f"{USAGES}{record}/set_user_usage/", json={"username": "alice"}, headers=auth("staff"))
    everything = client.get(url, headers=auth("staff")).get_json()
    with nothing_written(ledger):
        response = client.get(url, query_string={param: value}, headers=auth("staff"))
        if answer in ("none", "all"):
            assert response.status_code == 200
            assert response.get_json() == ([] if answer == "none" else everything)
        else:
            refused(response, answer)


@pytest.mark.parametrize("value", [SQL, INJECTED])
def test_sql_in_the_username_filter_matches_nothing(client, record, value):
    client.post(f"{USAGES}{record}/set_user_usage/", json={"username": "alice"}, headers=auth("staff"))
    response = client.get(USER_USAGES, query_string={"username": value}, headers=auth("staff"))
    assert response.get_json() == []


@pytest.mark.parametrize("value", [SQL, INJECTED, "\x00"])
def test_sql_or_null_in_a_token_is_401(client, value):
    refused(client.get(USAGES, headers={"Authorization": f"Token {value}"}), 401)
    refused(client.get(USAGES, query_string={"x-auth-token": value}), 401)


@pytest.mark.parametrize("field", ["type", "description"])
def test_null_characters_in_a_usage_item_are_400(client, ledger, field):
    item = {"type": "cpu", "amount": "1", field: "a\x00b"}
    with nothing_written(ledger):
        body = refused(client.post(SET_USAGE, json={"resource": RESOURCE, "usages": [item]}, headers=auth("staff")), 400)
        assert body == {"usages": [{field: ["Null characters are not allowed."]}]}


def test_null_characters_in_a_username_are_400(client, ledger, record):
    with nothing_written(ledger):
        response = client.post(f"{USAGES}{record}/set_user_usage/", json={"username": "al\x00ice"}, headers=auth("staff"))
        assert refused(response, 400) == {"username": ["Null characters are not allowed."]}


@pytest.mark.parametrize("url, param", [(USAGES, "type"), (USER_USAGES, "type"), (USER_USAGES, "username")])
def test_null_characters_in_a_text_filter_are_400(client, url, param):
    response = client.get(url, query_string={param: "cpu\x00"}, headers=auth("staff"))
    assert refused(response, 400) == {param: ["Null characters are not allowed."]}


@pytest.mark.parametrize("param", ["page", "page_size"])
@pytest.mark.parametrize("value", ["\u00b2", "\u0661", "-1", "1e3", "0x10", " 1", "99999999999999999999999999"])
def test_odd_page_numbers_are_never_a_server_error(client, record, param, value):
    response = client.get(USAGES, query_string={param: value}, headers=auth("staff"))
    assert response.status_code in (200, 404)
    assert response.mimetype == "application/json"


@pytest.mark.parametrize("query", [
    {"date_before": "9999-12-31"}, {"date_after": "9999-12-31"}, {"date_after": "0001-01-01"},
    {"billing_period": "0001-01-01"}, {"billing_period_year": "1e400"}, {"billing_period_year": "-inf"},
    {"billing_period_month": "nan"}, {"resource": "http://[::1/api/resources/x/"},
    {"component_usage__billing_period": "9999-12-31"},
])
def test_extreme_filter_values_are_never_a_server_error(client, record, query):
    response = client.get(USER_USAGES, query_string=query, headers=auth("staff"))
    assert response.status_code in (200, 400)
    assert response.mimetype == "application/json"


@pytest.mark.parametrize("path", [
    "/api/", "/api/unknown/", "/admin/", "/api/marketplace-component-usages/not-a-uuid/",
    "/api/marketplace-component-usages/..%2f..%2fetc%2fpasswd", "/api/marketplace-component-usages/%00/",
    f"/api/marketplace-component-usages/{RESOURCE}/unknown_action/", "/api/marketplace-offering-users/not-a-uuid/",
    "/api/" + "a" * 10_000 + "/",
])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_unknown_routes_are_404_with_a_json_body(client, ledger, path, method):
    with nothing_written(ledger):
        assert refused(client.open(path, method=method, headers=auth("staff")), 404) == {"detail": "Not found."}


ROUTES = {  # a route with its uuid filled in -> the methods it answers
    USAGES: {"GET", "HEAD"},
    f"{USAGES}{{record}}/": {"GET", "HEAD"},
    f"{USAGES}{{record}}/history/": {"GET", "HEAD"},
    USER_USAGES: {"GET", "HEAD"},
    f"{USER_USAGES}{{user_record}}/": {"GET", "HEAD"},
    SET_USAGE: {"POST"},
    f"{USAGES}{{record}}/set_user_usage/": {"POST"},
    f"{USAGES}{{record}}/set_user_usages/": {"POST"},
    "/api/schema/": {"GET", "HEAD"},
    "/api/docs/": {"GET", "HEAD"},
    "/api/usage-totals/": {"GET", "HEAD"},
    "/": {"GET", "HEAD"},
    "/sign-in": {"POST"},
    "/sign-out": {"POST"},
}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "BREW"]


@pytest.mark.parametrize("route, method", [
    (route, method) for route, allowed in ROUTES.items() for method in METHODS if method not in allowed
])
def test_every_other_method_on_every_route_is_405_with_a_json_body(client, ledger, record, route, method):
    client.post(f"{USAGES}{record}/set_user_usage/", json={"username": "alice"}, headers=auth("staff"))
    user_record = client.get(USER_USAGES, headers=auth("staff")).get_json()[0]["uuid"]
    url = route.format(record=record, user_record=user_record)
    with nothing_written(ledger):
        response = client.open(url, method=method, json=VALID_REPORT, headers=auth("staff"))
        assert response.status_code == 405
        assert set(response.headers["Allow"].split(", ")) >= ROUTES[route]
        if method != "HEAD":  # a HEAD answer has no body
            assert refused(response) == {"detail": f'Method "{method}" not allowed.'}
