"""Idempotency-Key on the write endpoints: a retry answers again without writing again."""

import threading

import pytest

from ledger.backends.sqlite import store
from ledger.commands import idempotency

from .conftest import auth
from .world import RESOURCE

URL = "/api/marketplace-component-usages/set_usage/"
BODY = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]}


def post(client, body=BODY, key="key-1", user="staff"):
    return client.post(URL, json=body, headers={**auth(user), "Idempotency-Key": key})


def usage_events(ledger) -> int:
    return sum(1 for event in ledger.store.read() if event.type == "UsageReported")


def test_retry_with_the_same_key_and_body_answers_201_and_appends_nothing(client, ledger):
    first, retry = post(client), post(client)
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.data == b""
    assert usage_events(ledger) == 1


def test_a_retry_is_answered_only_once_the_log_is_flushed(client, ledger, monkeypatch):
    """The original write may be committed by another process that has not flushed it yet."""
    post(client)
    flushes = []
    monkeypatch.setattr(store.os, "fdatasync", flushes.append)
    assert post(client).status_code == 201
    assert len(flushes) == 1


def test_same_body_with_other_whitespace_is_the_same_request(client, ledger):
    post(client)
    retry = client.post(
        URL, data='{"usages": [{"amount": "5", "type": "cpu"}],   "resource": "%s"}' % RESOURCE,
        headers={**auth("staff"), "Idempotency-Key": "key-1", "Content-Type": "application/json"},
    )
    assert retry.status_code == 201
    assert usage_events(ledger) == 1


def test_same_key_with_a_different_body_is_422_and_writes_nothing(client, ledger):
    post(client)
    other = post(client, {**BODY, "usages": [{"type": "cpu", "amount": "6"}]})
    assert other.status_code == 422
    assert other.get_json() == {"detail": "This Idempotency-Key was already used for a different request."}
    assert usage_events(ledger) == 1


def test_keys_belong_to_one_user(client, ledger):
    assert post(client, user="staff").status_code == 201
    # Another body under the same key: another user's key, not a reuse (and a change, so it is recorded).
    assert post(client, {**BODY, "usages": [{"type": "cpu", "amount": "6"}]}, user="provider-owner").status_code == 201
    assert usage_events(ledger) == 2


def test_a_refused_request_does_not_use_up_its_key(client, ledger):
    refused = post(client, {**BODY, "usages": [{"type": "nodes", "amount": "1"}]})
    assert refused.status_code == 400
    assert post(client).status_code == 201
    assert usage_events(ledger) == 1


def test_requests_without_a_key_are_applied_every_time(client, ledger):
    for amount in ("5", "6"):  # a report equal to what its record holds would append nothing, key or not
        assert client.post(URL, json={**BODY, "usages": [{"type": "cpu", "amount": amount}]},
                           headers=auth("staff")).status_code == 201
    assert usage_events(ledger) == 2


def test_overlong_key_is_400(client):
    assert post(client, key="k" * 256).status_code == 400


def test_keys_are_kept_35_days_and_purged_when_a_month_starts_after_that(client, ledger, now):
    now("2026-03-15T12:00:00Z")
    post(client, key="old")
    now("2026-04-19T12:00:00Z")  # 35 days later, in a new month: still remembered
    ledger.roll_periods()
    assert post(client, key="old").status_code == 201
    assert usage_events(ledger) == 1
    now("2026-05-02T12:00:00Z")  # 48 days later, a new month starts: forgotten
    ledger.roll_periods()
    remembered = ledger.conn.execute("SELECT COUNT(*) FROM idempotency_keys WHERE key = 'old'").fetchone()[0]
    assert remembered == 0


def test_concurrent_retries_write_once(app, ledger):
    barrier = threading.Barrier(4)
    statuses = []

    def send():
        client = app.test_client()
        barrier.wait()
        statuses.append(post(client, key="race").status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 4
    assert usage_events(ledger) == 1


def test_check_tells_a_replay_from_a_reused_key(ledger):
    key = idempotency.Key.of(1, "k", "POST", "/x", b"{}", 201)
    with ledger.store.transaction():
        idempotency.remember(ledger.conn, key)
    with pytest.raises(idempotency.Replayed):
        idempotency.check(ledger.conn, key)
    with pytest.raises(idempotency.KeyReused):
        idempotency.check(ledger.conn, idempotency.Key.of(1, "k", "POST", "/x", b'{"a":1}', 201))


def test_user_usage_retries_are_idempotent_too(client, ledger):
    post(client)
    record = client.get("/api/marketplace-component-usages/", headers=auth("staff")).get_json()[0]["uuid"]
    for path, body in (
        ("set_user_usage", {"username": "alice", "usage": "2"}),
        ("set_user_usages", {"usages": [{"username": "bob", "usage": "3"}]}),
    ):
        url = f"/api/marketplace-component-usages/{record}/{path}/"
        headers = {**auth("staff"), "Idempotency-Key": path}
        before = ledger.store.count()
        assert [client.post(url, json=body, headers=headers).status_code for _ in range(2)] == [201, 201]
        assert ledger.store.count() == before + 1
        assert client.post(url, json={**body, "extra": 1}, headers=headers).status_code == 422


def test_remembered_keys_are_not_a_difference_for_verify(client, ledger):
    from ledger import history

    post(client)
    result = history.verify(ledger)
    assert result.broken is None and result.differences == ()
    assert result.tables >= 3
