"""A request whose first read carries its arrival (Ledger.presume_arrival): served on the positions the
last request found, and served again where they do not hold, so that it still sees every write
acknowledged before it arrived, from any process, and a token made or revoked since."""

import json

import pytest

from ledger.backends.postgres import connection as postgres_connection
from ledger.cli import load_catalog
from ledger.commands import tokens, usage
from ledger.database import Ledger
from ledger.log import events
from ledger.rules import clock
from ledger.rules.access import Caller

from .conftest import ON_BOTH_BACKENDS, auth
from .world import OFFERING, PROJECT, RESOURCE

STAFF = Caller(id=1, username="staff", is_staff=True)
LIST = f"/api/marketplace-component-usages/?resource_uuid={RESOURCE}&type=cpu"
NEW_RESOURCE, NEW_PLAN_PERIOD = "0d0000000000000000000000000000aa", "0e0000000000000000000000000000aa"


def usages_listed(client, headers=None) -> list[str]:
    answer = client.get(LIST, headers=headers or auth("staff"))
    assert answer.status_code == 200, answer.get_json()
    return [record["usage"] for record in answer.get_json()]


def appended_unfolded(db_path: str, amount: str) -> None:
    """A report acknowledged by another process's writer, which the views have not folded yet: the
    projector's lease is held by a third one that does not fold."""
    holder, writer = Ledger(db_path), Ledger(db_path)
    try:
        assert holder.lease.acquire()
        usage.set_usage(writer, STAFF, usage.SetUsage([usage.UsageItem("cpu", amount)], resource_uuid=RESOURCE))
        holder.lease.release()
    finally:
        writer.close()
        holder.close()


@ON_BOTH_BACKENDS
def test_a_list_sees_a_write_acknowledged_since_the_last_request_found_the_views(client, db_path):
    assert usages_listed(client) == []  # the positions the next request presumes
    appended_unfolded(db_path, "7.00")
    assert usages_listed(client) == ["7.00"]
    appended_unfolded(db_path, "8.00")
    record = client.get(LIST, headers=auth("staff")).get_json()[0]
    answer = client.get(f"/api/marketplace-component-usages/{record['uuid']}/", headers=auth("staff"))
    assert answer.get_json()["usage"] == "8.00"


@ON_BOTH_BACKENDS
def test_a_count_taken_after_the_page_is_of_the_views_the_page_found(client, db_path):
    """A new record changes no rows (projections/runner.py): the page's presumption holds, and the
    count, kept for the views' position, is taken at the position the page found."""
    listed = f"/api/marketplace-component-usages/?resource_uuid={RESOURCE}"
    appended_unfolded(db_path, "1.00")
    assert client.get(listed, headers=auth("staff")).headers["X-Result-Count"] == "1"
    other = Ledger(db_path)
    try:
        usage.set_usage(other, STAFF, usage.SetUsage([usage.UsageItem("ram", "2")], resource_uuid=RESOURCE))
    finally:
        other.close()
    answer = client.get(listed, headers=auth("staff"))
    assert len(answer.get_json()) == 2 and answer.headers["X-Result-Count"] == "2"


@ON_BOTH_BACKENDS
def test_a_later_page_counts_a_record_reported_since_the_last_request(client, db_path):
    """A page other than the first is counted before it is read: on the views the request has
    arrived at, not on the count kept for the positions the last request found."""
    listed = f"/api/marketplace-component-usages/?resource_uuid={RESOURCE}&page_size=1"
    for component in ("cpu", "ram", "license"):
        other = Ledger(db_path)  # folds its report itself
        try:
            usage.set_usage(other, STAFF, usage.SetUsage([usage.UsageItem(component, "1")], resource_uuid=RESOURCE))
        finally:
            other.close()
        if component == "ram":
            assert client.get(listed, headers=auth("staff")).headers["X-Result-Count"] == "2"  # kept
    answer = client.get(listed + "&page=2", headers=auth("staff"))
    assert answer.status_code == 200, answer.get_json()
    assert answer.headers["X-Result-Count"] == "3" and len(answer.get_json()) == 1


def reported(client, username: str, resource: str = RESOURCE):
    return client.post("/api/marketplace-component-usages/set_usage/", headers=auth(username),
                       json={"resource": resource, "usages": [{"type": "cpu", "amount": "2.5"}]})


@ON_BOTH_BACKENDS
def test_a_report_on_a_resource_or_by_a_role_made_since_the_last_request_is_taken(client, db_path, catalog):
    assert reported(client, "stranger").status_code == 400  # "does not exist" for a resource they may not read
    catalog["resources"].append({"uuid": NEW_RESOURCE, "name": "alloc-new", "offering_uuid": OFFERING,
                                 "project_uuid": PROJECT, "state": "OK",
                                 "plan_periods": [{"uuid": NEW_PLAN_PERIOD, "start": "2025-01-01T00:00:00Z", "end": None}]})
    catalog["roles"].append({"username": "stranger", "scope": "offering", "scope_uuid": OFFERING, "role": "manager"})
    other = Ledger(db_path)
    try:
        load_catalog(other, json.dumps(catalog))
    finally:
        other.close()
    answer = reported(client, "stranger", NEW_RESOURCE)
    assert answer.status_code == 201, answer.get_json()


@ON_BOTH_BACKENDS
def test_a_token_issued_or_revoked_since_the_last_request_counts_at_once(client, db_path):
    assert usages_listed(client) == []
    other = Ledger(db_path)
    try:
        _, key = tokens.issue_token(other, "stranger")
        for _ in range(2):  # the second time, its holder is known on the positions the request presumes
            assert client.get(LIST, headers={"Authorization": f"Token {key}"}).status_code == 200
        tokens.revoke_tokens(other, "stranger")
    finally:
        other.close()
    assert client.get(LIST, headers={"Authorization": f"Token {key}"}).status_code == 401
    answer = client.post("/api/marketplace-component-usages/set_usage/", headers={"Authorization": f"Token {key}"},
                         json={"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "2.5"}]})
    assert answer.status_code == 401


@pytest.mark.parametrize("db_path", ["postgresql"], indirect=True)  # a server's statements, counted on its connection
def test_a_request_whose_presumed_positions_hold_reads_the_views_once(client, db_path, monkeypatch):
    client.post("/api/marketplace-component-usages/set_usage/", headers=auth("staff"),
                json={"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1.5"}]})
    record = events.usage_record_uuid(RESOURCE, "cpu", clock.billing_period(clock.now()).isoformat())
    shares = f"/api/marketplace-component-usages/{record}/set_user_usages/"
    alice = {"usages": [{"username": "alice", "usage": "1.5"}]}
    assert client.post(shares, headers=auth("staff"), json=alice).status_code == 201
    assert usages_listed(client) == ["1.50"]  # this request's caches are filled
    sent = []
    execute = postgres_connection.Connection.execute
    monkeypatch.setattr(postgres_connection.Connection, "execute",
                        lambda self, sql, *args: sent.append(sql) or execute(self, sql, *args))
    assert usages_listed(client) == ["1.50"]
    assert len(sent) == 1 and "arrival" in sent[0]
    sent.clear()
    answer = client.post("/api/marketplace-component-usages/set_usage/", headers=auth("staff"),
                         json={"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1.5"}]})
    assert answer.status_code == 201
    assert len(sent) == 1 and "arrival" in sent[0]  # the same figure again: its decision appends nothing
    sent.clear()
    assert client.post(shares, headers=auth("staff"), json=alice).status_code == 201
    # The record, with the arrival; then the decision's one statement (the same share appends nothing).
    assert len(sent) == 2 and "arrival" in sent[0], sent
