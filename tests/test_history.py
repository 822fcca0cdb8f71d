"""History tools: verify, audit, replay, export and import, and a record's history endpoint."""

import json
import sqlite3
import uuid

import pytest
from click.testing import CliRunner

from ledger import history
from ledger.cli import cli
from ledger.commands import usage
from ledger.database import Ledger
from ledger.log.events import usage_record_uuid
from ledger.log.records import canonical
from ledger.rules.access import Caller
from projections import usages

from .conftest import auth, event_count
from .world import NON_READERS, PROVIDER, READERS, RESOURCE, USERS, token

STAFF = Caller(id=1, username="staff", is_staff=True)
PROVIDER_OWNER = Caller(id=3, username="provider-owner", customers_owned=frozenset({PROVIDER}))
CPU_MARCH = usage_record_uuid(RESOURCE, "cpu", "2026-03-01")


def run(db_path: str, *args: str):
    result = CliRunner().invoke(cli, ["--db", db_path, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def report(ledger: Ledger, caller: Caller = STAFF, policy: str = "none", **amounts: str) -> None:
    items = [usage.UsageItem(type=kind, amount=amount, missing_usage_policy=policy) for kind, amount in amounts.items()]
    usage.set_usage(ledger, caller, usage.SetUsage(items=items, resource_uuid=RESOURCE))


def all_records(path: str) -> list[dict]:
    ledger = Ledger(path)
    try:
        return usages.records(ledger.conn, None, {}, [], -1)
    finally:
        ledger.close()


def tamper(path: str, sql: str, *params) -> None:
    """Changes the database under the ledger, guards of the log dropped first."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS views", (f"{path}.views",))  # the views' file beside the log's
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    conn.execute("DROP TRIGGER IF EXISTS events_no_delete")
    conn.execute(sql, params)
    conn.close()


def exported(db_path: str, path, *args: str) -> list[str]:
    result = run(db_path, "export", "--output", str(path), *args)
    assert result.exit_code == 0, result.output
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


# verify


def test_verify_passes_on_an_intact_ledger(ledger, db_path):
    report(ledger, cpu="10.00", ram="2.00")
    result = run(db_path, "verify")
    assert result.exit_code == 0, result.output
    assert f"hash chain intact: {ledger.store.count()} event(s)" in result.stdout
    assert "views identical" in result.stdout


def test_verify_while_a_server_writes_compares_the_views_with_the_log_they_were_folded_from(ledger, db_path):
    """A write committed and folded while verify walks the chain is in neither side it compares:
    on SQLite the views and the log are two files, each read as of its first read in verify."""
    report(ledger, cpu="1.00")
    ledger.reach_views()
    verifying = Ledger(db_path)
    walk = verifying.store.verify_chain

    def walk_while_another_writes(*args, **kwargs):
        report(ledger, cpu="2.00")
        ledger.reach_views()  # folded: the views now stand past the log's head as verify read it
        return walk(*args, **kwargs)

    verifying.store.verify_chain = walk_while_another_writes
    try:
        verification = history.verify(verifying)
    finally:
        verifying.close()
    assert not verification.failed, verification.differences


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_verify_names_the_seq_of_a_tampered_event(ledger, db_path, position):
    report(ledger, cpu="10.00")
    report(ledger, cpu="12.00")
    last = ledger.store.count()
    seq = {"first": 1, "middle": last // 2, "last": last}[position]
    tamper(db_path, "UPDATE events SET data = json_set(data, '$.tampered', 1) WHERE seq = ?", seq)
    result = run(db_path, "verify")
    assert result.exit_code == 1
    assert f"hash chain broken at seq {seq}:" in result.stdout


def test_verify_reports_a_view_that_differs_from_the_log(ledger, db_path):
    report(ledger, cpu="10.00", ram="2.00")
    tamper(db_path, "UPDATE component_usages SET usage = '99.00' WHERE uuid = ?", CPU_MARCH)
    result = run(db_path, "verify")
    assert result.exit_code == 1
    assert "component_usages: 1 row(s) only in the live view, 1 only in the rebuild" in result.stdout
    assert '"usage": "99.00"' in result.stdout and '"usage": "10.00"' in result.stdout


def kept_head(db_path: str) -> str:
    """The head a verify prints, as `--head` takes it back."""
    (line,) = [line for line in run(db_path, "verify").stdout.splitlines() if line.startswith("head: ")]
    return ":".join(line.removeprefix("head: ").split(" "))


def test_verify_prints_the_head_of_the_log(ledger, db_path):
    report(ledger, cpu="10.00")
    seq, hash_ = ledger.store.head()
    assert f"head: {seq} {hash_}\n" in run(db_path, "verify").stdout


def test_a_log_cut_short_passes_a_plain_verify_but_not_a_kept_head(ledger, db_path):
    report(ledger, cpu="10.00")
    report(ledger, cpu="12.00")
    head = kept_head(db_path)
    last = ledger.store.count()
    ledger.close()
    tamper(db_path, "DELETE FROM events WHERE seq > ?", last - 2)
    assert run(db_path, "rebuild").exit_code == 0
    plain = run(db_path, "verify")
    assert plain.exit_code == 0, plain.output
    checked = run(db_path, "verify", "--head", head)
    assert checked.exit_code == 1
    assert f"kept head {last} is missing: the log ends at seq {last - 2}" in checked.stdout


def test_verify_catches_a_kept_head_whose_hash_differs(ledger, db_path):
    report(ledger, cpu="10.00")
    seq, hash_ = ledger.store.head()
    other = ("0" if hash_[0] != "0" else "1") + hash_[1:]
    result = run(db_path, "verify", "--head", f"{seq - 1}:{ledger.store.event_hash(seq - 1)}", "--head", f"{seq}:{other}")
    assert result.exit_code == 1
    assert f"kept head {seq} does not match: the log's event {seq} has hash {hash_}, not {other}" in result.stdout
    assert f"kept head {seq - 1}" not in result.stdout


def test_verify_passes_with_every_kept_head_in_the_log(ledger, db_path):
    report(ledger, cpu="10.00")
    earlier = kept_head(db_path)
    report(ledger, cpu="12.00")
    result = run(db_path, "verify", "--head", earlier, "--head", kept_head(db_path))
    assert result.exit_code == 0, result.output
    assert "kept head(s) found in the log: 2" in result.stdout


@pytest.mark.parametrize("value", ["12", "x:" + "0" * 64, "3:" + "0" * 63, "3:" + "G" * 64])
def test_verify_refuses_a_head_that_is_not_seq_and_hash(db_path, value):
    result = run(db_path, "verify", "--head", value)
    assert result.exit_code == 2
    assert "is not SEQ:HASH" in result.output


# export and import


def test_export_import_round_trip_serves_identical_usage_records(ledger, db_path, tmp_path):
    report(ledger, cpu="10.00", ram="2.00")
    report(ledger, PROVIDER_OWNER, policy="reuse", storage="300.00", cpu="11.50")
    lines = exported(db_path, tmp_path / "log.jsonl")
    assert len(lines) == ledger.store.count()
    copy = str(tmp_path / "copy.db")
    result = run(copy, "import", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 0, result.output
    assert all_records(copy) == all_records(db_path)
    assert run(copy, "verify").exit_code == 0


def test_export_lines_are_the_stored_events_as_canonical_json(ledger, db_path, tmp_path):
    report(ledger, cpu="10.00")
    lines = exported(db_path, tmp_path / "log.jsonl")
    assert lines == [canonical(vars(event)) + "\n" for event in ledger.store.read()]


def test_export_writes_a_column_of_an_unexpected_type_as_json(ledger, db_path, tmp_path):
    tamper(db_path, "UPDATE events SET version = 'one', data = ? WHERE seq = 1", '{"é":"\\"quoted\\""}')
    tamper(db_path, "UPDATE events SET version = 'two', data = 'not json' WHERE seq = 2")
    first, second = exported(db_path, tmp_path / "log.jsonl")[:2]
    assert (json.loads(first)["version"], json.loads(first)["data"]) == ("one", {"é": '"quoted"'})
    assert (json.loads(second)["version"], json.loads(second)["data"]) == ("two", "not json")


def test_an_export_since_a_seq_continues_a_copy(ledger, db_path, tmp_path):
    report(ledger, cpu="10.00")
    exported(db_path, tmp_path / "first.jsonl")
    copy = str(tmp_path / "copy.db")
    run(copy, "import", str(tmp_path / "first.jsonl"))
    head = ledger.store.count()
    report(ledger, cpu="20.00")
    lines = exported(db_path, tmp_path / "rest.jsonl", "--since", str(head))
    assert [json.loads(line)["seq"] for line in lines] == list(range(head + 1, ledger.store.count() + 1))
    assert run(copy, "import", str(tmp_path / "rest.jsonl")).exit_code == 0
    assert all_records(copy) == all_records(db_path)


def test_export_holds_no_clear_token(ledger, db_path, tmp_path):
    report(ledger, cpu="10.00")
    text = "".join(exported(db_path, tmp_path / "log.jsonl"))
    assert all(token(username) not in text for username in USERS)


def test_import_refuses_an_edited_line_and_writes_nothing(ledger, db_path, tmp_path):
    report(ledger, cpu="10.00")
    lines = exported(db_path, tmp_path / "log.jsonl")
    edited = [n for n, line in enumerate(lines) if '"amount":"10.00"' in line][0]
    lines[edited] = lines[edited].replace("10.00", "1.00")
    (tmp_path / "edited.jsonl").write_text("".join(lines), encoding="utf-8")
    copy = str(tmp_path / "copy.db")
    result = run(copy, "import", str(tmp_path / "edited.jsonl"))
    assert result.exit_code == 1
    assert f"line {edited + 1}: hash chain broken at seq {edited + 1}: content does not match its hash" in result.output
    assert event_count(copy) == 0


def test_import_refuses_swapped_lines_and_writes_nothing(ledger, db_path, tmp_path):
    report(ledger, cpu="10.00")
    lines = exported(db_path, tmp_path / "log.jsonl")
    lines[-2], lines[-1] = lines[-1], lines[-2]
    (tmp_path / "swapped.jsonl").write_text("".join(lines), encoding="utf-8")
    copy = str(tmp_path / "copy.db")
    result = run(copy, "import", str(tmp_path / "swapped.jsonl"))
    assert result.exit_code == 1
    assert f"line {len(lines) - 1}: hash chain broken at seq {len(lines)}: expected seq {len(lines) - 1}" in result.output
    assert event_count(copy) == 0


# replay


def test_replay_until_a_seq_shows_a_value_later_replaced(ledger, db_path):
    report(ledger, cpu="10.00")
    then = ledger.store.count()
    report(ledger, cpu="20.00")
    result = run(db_path, "replay", "--until", str(then), "--json")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert (record["uuid"], record["usage"], record["carried"]) == (CPU_MARCH, "10.00", False)
    assert [r["usage"] for r in all_records(db_path)] == ["20.00"]


def test_replay_until_a_time_shows_the_records_as_they_stood(ledger, db_path, now):
    report(ledger, cpu="10.00")
    now("2026-03-20T12:00:00Z")
    report(ledger, cpu="20.00")
    result = run(db_path, "replay", "--until", "2026-03-18T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "10.00" in result.stdout and "20.00" not in result.stdout


# audit


def test_audit_shows_each_change_with_its_author(ledger, db_path):
    report(ledger, cpu="10.00", ram="1.00")
    report(ledger, PROVIDER_OWNER, cpu="12.50")
    result = run(db_path, "audit", str(uuid.UUID(RESOURCE)), "--type", "cpu", "--json")
    assert result.exit_code == 0, result.output
    changes = [(e["actor_id"], e["username"], e["old"], e["new"], e["carried"]) for e in json.loads(result.stdout)]
    assert changes == [(1, "staff", None, "10.00", False), (3, "provider-owner", "10.00", "12.50", False)]


def test_audit_table_shows_times_authors_and_values(ledger, db_path):
    report(ledger, cpu="10.00")
    report(ledger, PROVIDER_OWNER, cpu="12.50")
    result = run(db_path, "audit", RESOURCE, "--period", "2026-03")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["period", "type", "seq", "occurred_at", "recorded_at", "by", "old", "->", "new", "policy", "note"]
    assert "1 staff" in lines[2] and "- -> 10.00" in lines[2] and "2026-03-15T12:00:00.000000Z" in lines[2]
    assert "3 provider-owner" in lines[3] and "10.00 -> 12.50" in lines[3]


def test_audit_marks_values_carried_into_months_without_a_report(ledger, db_path, now):
    report(ledger, policy="reuse", storage="300.00")
    now("2026-05-10T00:00:00Z")
    ledger.roll_periods()
    result = run(db_path, "audit", RESOURCE, "--json")
    entries = [(e["billing_period"], e["new"], e["carried"], e["seq"] is None) for e in json.loads(result.stdout)]
    assert entries == [
        ("2026-03-01", "300.00", False, False), ("2026-04-01", "300.00", True, True), ("2026-05-01", "300.00", True, True),
    ]


def test_audit_shows_reports_of_users_shares_with_what_they_replaced(ledger, db_path):
    report(ledger, cpu="10.00", ram="1.00")
    for caller, items in ((STAFF, [("alice", "4.00"), ("bob", "6.00")]), (PROVIDER_OWNER, [("alice", "5.00")])):
        command = usage.SetUserUsages(CPU_MARCH, [usage.UserUsageItem(name, amount) for name, amount in items], bulk=True)
        usage.set_user_usages(ledger, caller, command)
    result = run(db_path, "audit", RESOURCE, "--type", "cpu", "--json")
    entries = [(e["user"], e["username"], e["old"], e["new"]) for e in json.loads(result.stdout)]
    assert entries == [
        (None, "staff", None, "10.00"), ("alice", "staff", None, "4.00"), ("bob", "staff", None, "6.00"),
        ("alice", "provider-owner", "4.00", "5.00"),
    ]
    table = run(db_path, "audit", RESOURCE, "--type", "cpu").stdout.splitlines()
    assert table[-1].split()[-2:] == ["user", "alice"] and "4.00 -> 5.00" in table[-1]


def test_audit_refuses_a_resource_that_is_not_a_uuid(db_path):
    result = run(db_path, "audit", "alloc-01")
    assert result.exit_code == 2
    assert "not a UUID" in result.output


# GET /api/marketplace-component-usages/{uuid}/history/


def post_usage(client, username: str, amount: str):
    body = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": amount}]}
    response = client.post("/api/marketplace-component-usages/set_usage/", json=body, headers=auth(username))
    assert response.status_code == 201, response.get_json()


@pytest.mark.parametrize("username", READERS)
def test_history_endpoint_returns_the_events_of_the_record(client, username):
    post_usage(client, "staff", "10")
    post_usage(client, "provider-owner", "12.5")
    response = client.get(f"/api/marketplace-component-usages/{uuid.UUID(CPU_MARCH)}/history/", headers=auth(username))
    assert response.status_code == 200
    events = response.get_json()
    assert [(e["type"], e["actor_id"], e["data"]["amount"]) for e in events] == [
        ("UsageReported", 1, "10.00"), ("UsageReported", 3, "12.50"),
    ]
    assert set(events[0]) == {"seq", "event_id", "type", "occurred_at", "recorded_at", "actor_id", "data", "hash"}
    assert events[0]["occurred_at"] == events[0]["recorded_at"] == "2026-03-15T12:00:00Z"
    assert events[0]["seq"] < events[1]["seq"]


@pytest.mark.parametrize("username", NON_READERS)
def test_history_endpoint_is_not_found_for_a_non_reader(client, username):
    post_usage(client, "staff", "10")
    response = client.get(f"/api/marketplace-component-usages/{CPU_MARCH}/history/", headers=auth(username))
    assert response.status_code == 404
    assert response.get_json() == {"detail": "Not found."}


def test_history_endpoint_is_not_found_for_an_unknown_record(client):
    response = client.get(f"/api/marketplace-component-usages/{uuid.uuid4().hex}/history/", headers=auth("staff"))
    assert response.status_code == 404


def test_openapi_document_describes_the_history_endpoint(client):
    document = client.get("/api/schema/").get_json()
    operation = document["paths"]["/api/marketplace-component-usages/{uuid}/history/"]["get"]
    assert operation["operationId"] == "marketplace_component_usages_history"
    assert set(operation["responses"]) == {"200", "401", "404"}
    assert set(document["components"]["schemas"]["UsageEvent"]["properties"]) == {
        "seq", "event_id", "type", "occurred_at", "recorded_at", "actor_id", "data", "hash",
    }


def test_history_of_a_carried_record_is_the_reports_it_was_carried_from(client, ledger, now):
    body = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "7", "missing_usage_policy": "reuse"}]}
    assert client.post("/api/marketplace-component-usages/set_usage/", json=body, headers=auth("staff")).status_code == 201
    body["usages"][0]["amount"] = "8"
    assert client.post("/api/marketplace-component-usages/set_usage/", json=body, headers=auth("provider-owner")).status_code == 201
    now("2026-05-02T00:00:00Z")
    ledger.roll_periods()
    may = usage_record_uuid(RESOURCE, "cpu", "2026-05-01")
    response = client.get(f"/api/marketplace-component-usages/{may}/history/", headers=auth("staff"))
    assert response.status_code == 200
    assert [(e["actor_id"], e["data"]["billing_period"], e["data"]["amount"]) for e in response.get_json()] == [
        (1, "2026-03-01", "7.00"), (3, "2026-03-01", "8.00"),
    ]


def test_audit_of_an_unknown_resource_says_so_in_one_line(db_path):
    result = run(db_path, "audit", "0d000000-0000-0000-0000-0000000000ff")
    assert result.exit_code == 1
    assert result.output == "Error: no resource 0d0000000000000000000000000000ff in this ledger\n"


@pytest.mark.parametrize("fmt", ["--csv", "--nl"])
def test_audit_prints_csv_and_json_lines_with_every_field(ledger, db_path, fmt):
    report(ledger, cpu="10.00")
    report(ledger, PROVIDER_OWNER, cpu="12.50")
    output = run(db_path, "audit", RESOURCE, "--type", "cpu", fmt).stdout
    if fmt == "--csv":
        header, *rows = output.splitlines()
        assert header.split(",")[:4] == ["billing_period", "type", "seq", "occurred_at"]
        assert [row.split(",")[7:9] for row in rows] == [["", "10.00"], ["10.00", "12.50"]]
    else:
        assert [json.loads(line)["new"] for line in output.splitlines()] == ["10.00", "12.50"]


def test_replay_before_any_record_prints_a_csv_header_of_every_field(db_path):
    header = run(db_path, "replay", "--until", "1", "--csv").stdout
    assert header == ",".join((*usages.RECORD_KEYS, "carried")) + "\n"
