"""Requests at the edges of HTTP: chunked bodies over the limit, what gunicorn refuses itself,
and idempotent retries that spell a UUID another way."""

import http.client
import io
import json
import socket
import uuid

import pytest

from ledger.log import events

from .conftest import auth
from .serving import LedgerServer
from .world import OFFERING_USER, RESOURCE

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
LIMIT = 300
REPORT = json.dumps({"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1"}]}).encode()


@pytest.fixture
def app(db_path):
    from api import close, create_app

    app = create_app({"DATABASE": db_path, "TESTING": True, "ROLLOVER_SECONDS": 0, "MAX_CONTENT_LENGTH": LIMIT})
    yield app
    close(app)


def chunked(client, body: bytes):
    return client.post(SET_USAGE, input_stream=io.BytesIO(body), environ_overrides={"wsgi.input_terminated": True},
                       headers={**auth("staff"), "Transfer-Encoding": "chunked", "Content-Type": "application/json"})


@pytest.mark.parametrize("excess", [b" " * LIMIT, b"x" * LIMIT])
def test_a_chunked_body_over_the_limit_is_413_and_writes_nothing(client, ledger, excess):
    before = ledger.store.count()
    response = chunked(client, REPORT + excess)
    assert (response.status_code, response.get_json()) == (413, {"detail": "Request body is too large."})
    assert ledger.store.count() == before


def test_a_chunked_body_up_to_the_limit_is_served(client, ledger):
    before = ledger.store.count()
    assert chunked(client, REPORT + b" " * (LIMIT - len(REPORT))).status_code == 201
    assert ledger.store.count() == before + 1


def send_chunked(url: str, body: bytes, chunk: int = 64) -> tuple[int, dict]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST", SET_USAGE, body=(body[i:i + chunk] for i in range(0, len(body), chunk)),
                           headers={**auth("staff"), "Content-Type": "application/json"}, encode_chunked=True)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


def raw_answer(url: str, request: bytes) -> tuple[str, str, bytes]:
    """The status line, Content-Type and body of gunicorn's answer to raw request bytes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    content_type = next(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("content-type:"))
    return lines[0], content_type, body


def test_a_real_server_refuses_chunked_bodies_over_the_limit_and_gunicorns_own_errors_are_json(db_path):
    with LedgerServer(db_path, env={"LEDGER_MAX_BODY": str(LIMIT)}) as server:
        assert send_chunked(server.url, REPORT + b" " * LIMIT) == (413, {"detail": "Request body is too large."})
        assert send_chunked(server.url, REPORT + b"x" * LIMIT) == (413, {"detail": "Request body is too large."})
        assert send_chunked(server.url, REPORT)[0] == 201
        long_line = b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        huge_header = b"GET /api/schema/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
        many_headers = b"GET /api/schema/ HTTP/1.1\r\nHost: x\r\n" + b"".join(
            f"X-H{i}: 1\r\n".encode() for i in range(200)) + b"\r\n"
        garbage = b"\x00\x01 nonsense\r\n\r\n"
        for request in (long_line, huge_header, many_headers, garbage):
            status, content_type, body = raw_answer(server.url, request)
            assert int(status.split()[1]) in (400, 414, 431), status
            assert content_type == "application/json"
            assert set(json.loads(body)) == {"detail"}


def test_an_idempotent_retry_spelling_uuids_another_way_is_the_same_request(client, ledger):
    body = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]}
    hyphenated = {**body, "resource": str(uuid.UUID(RESOURCE)).upper()}
    headers = {**auth("staff"), "Idempotency-Key": "spelled"}
    assert client.post(SET_USAGE, json=body, headers=headers).status_code == 201
    before = ledger.store.count()
    assert client.post(SET_USAGE, json=hyphenated, headers=headers).status_code == 201
    assert ledger.store.count() == before
    changed = {**hyphenated, "usages": [{"type": "cpu", "amount": "6"}]}
    assert client.post(SET_USAGE, json=changed, headers=headers).status_code == 422


def test_an_idempotent_user_usage_retry_spelling_the_record_and_user_another_way_is_the_same_request(client, ledger):
    assert client.post(SET_USAGE, json={"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]},
                       headers=auth("staff")).status_code == 201
    record = events.usage_record_uuid(RESOURCE, "cpu", "2026-03-01")
    headers = {**auth("staff"), "Idempotency-Key": "share"}
    link = f"/api/marketplace-offering-users/{OFFERING_USER}/"
    first = {"usages": [{"username": "alice", "usage": "1", "user": link}]}
    assert client.post(f"/api/marketplace-component-usages/{record}/set_user_usages/", json=first,
                       headers=headers).status_code == 201
    before = ledger.store.count()
    spelled = str(uuid.UUID(record)).upper()
    retry = {"usages": [{"username": "alice", "usage": "1", "user": link.replace(OFFERING_USER, str(uuid.UUID(OFFERING_USER)))}]}
    assert client.post(f"/api/marketplace-component-usages/{spelled}/set_user_usages/", json=retry,
                       headers=headers).status_code == 201
    assert ledger.store.count() == before
    other_user = {"usages": [{"username": "ALICE", "usage": "1", "user": link}]}
    assert client.post(f"/api/marketplace-component-usages/{record}/set_user_usages/", json=other_user,
                       headers=headers).status_code == 422
