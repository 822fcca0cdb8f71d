"""Import of an export: overlaps skipped or refused, poisoned files refused whole, both forms of data."""

import hashlib
import json
import sqlite3
import uuid

import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_count as count_usages,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_list as list_usages,
)
from waldur_api_client.api.marketplace_component_usages import (
    marketplace_component_usages_set_usage as set_usage,
)
from waldur_api_client.models import ComponentUsageCreateRequest, ComponentUsageItemRequest

from ledger.commands import usage
from ledger.database import Ledger
from ledger.log.hashing import chain_hash
from ledger.log.records import canonical
from ledger.rules.access import Caller

from .conftest import auth
from .test_history import all_records, run
from .world import PLAN_PERIOD, RESOURCE, token

STAFF = Caller(id=1, username="staff", is_staff=True)
SET_USAGE = "/api/marketplace-component-usages/set_usage/"
MARCH = "2026-03-15T12:00:00.000000Z"


def report(path: str, **amounts: str) -> None:
    ledger = Ledger(path)
    try:
        items = [usage.UsageItem(type=kind, amount=amount) for kind, amount in amounts.items()]
        usage.set_usage(ledger, STAFF, usage.SetUsage(items=items, resource_uuid=RESOURCE))
    finally:
        ledger.close()


def export_lines(db_path: str, path) -> list[str]:
    result = run(db_path, "export", "--output", str(path))
    assert result.exit_code == 0, result.output
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def write(path, lines: list[str]) -> str:
    path.write_text("".join(lines), encoding="utf-8")
    return str(path)


def rows(path: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


# Overlapping imports


def test_reimporting_an_export_skips_every_event_and_verifies(db_path, tmp_path):
    report(db_path, cpu="10.00")
    lines = export_lines(db_path, tmp_path / "log.jsonl")
    before = rows(db_path)
    result = run(db_path, "import", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 0, result.output
    assert f"imported 0 event(s), skipped {len(lines)} already here" in result.output
    assert rows(db_path) == before
    assert run(db_path, "verify").exit_code == 0


def test_an_overlapping_import_appends_only_the_new_events(db_path, tmp_path):
    export_lines(db_path, tmp_path / "first.jsonl")
    copy = str(tmp_path / "copy.db")
    assert run(copy, "import", str(tmp_path / "first.jsonl")).exit_code == 0
    shared = len(rows(copy))
    report(db_path, cpu="10.00")
    report(db_path, cpu="12.00", ram="1.00")
    lines = export_lines(db_path, tmp_path / "all.jsonl")
    result = run(copy, "import", str(tmp_path / "all.jsonl"))
    assert result.exit_code == 0, result.output
    assert f"imported {len(lines) - shared} event(s), skipped {shared} already here" in result.output
    assert rows(copy) == rows(db_path)
    assert all_records(copy) == all_records(db_path)
    verified = run(copy, "verify")
    assert verified.exit_code == 0 and "views identical" in verified.output


def test_an_import_starting_inside_the_log_and_continuing_it_is_accepted(db_path, tmp_path):
    report(db_path, cpu="10.00")
    export_lines(db_path, tmp_path / "first.jsonl")
    copy = str(tmp_path / "copy.db")
    run(copy, "import", str(tmp_path / "first.jsonl"))
    middle = len(rows(copy)) - 2
    report(db_path, cpu="11.00")
    result = run(db_path, "export", "--since", str(middle), "--output", str(tmp_path / "tail.jsonl"))
    assert result.exit_code == 0
    result = run(copy, "import", str(tmp_path / "tail.jsonl"))
    assert result.exit_code == 0, result.output
    assert "skipped 2 already here" in result.output
    assert rows(copy) == rows(db_path)


def test_a_differing_overlap_is_refused_naming_the_first_differing_seq(db_path, tmp_path):
    export_lines(db_path, tmp_path / "shared.jsonl")
    copy = str(tmp_path / "copy.db")
    run(copy, "import", str(tmp_path / "shared.jsonl"))
    differs_at = len(rows(copy)) + 1
    report(db_path, cpu="10.00")
    report(copy, cpu="20.00")
    before = rows(copy)
    export_lines(db_path, tmp_path / "other.jsonl")
    result = run(copy, "import", str(tmp_path / "other.jsonl"))
    assert result.exit_code == 1
    assert f"seq {differs_at} does not match the event already here" in result.output
    assert "hash chain broken" not in result.output
    assert rows(copy) == before


def test_a_continuation_of_another_history_is_refused(db_path, tmp_path):
    export_lines(db_path, tmp_path / "shared.jsonl")
    copy = str(tmp_path / "copy.db")
    run(copy, "import", str(tmp_path / "shared.jsonl"))
    report(db_path, cpu="10.00")
    report(db_path, cpu="11.00")
    report(copy, cpu="20.00")
    head = len(rows(copy))
    before = rows(copy)
    run(db_path, "export", "--since", str(head), "--output", str(tmp_path / "theirs.jsonl"))
    result = run(copy, "import", str(tmp_path / "theirs.jsonl"))
    assert result.exit_code == 1
    assert f"seq {head + 1} does not match this log: its prev_hash is not the hash of the event already here" \
           f" at seq {head}" in result.output
    assert rows(copy) == before


def test_an_import_that_leaves_a_gap_is_refused(db_path, tmp_path):
    report(db_path, cpu="10.00")
    head = len(rows(db_path))
    copy = str(tmp_path / "copy.db")
    run(db_path, "export", "--since", "2", "--output", str(tmp_path / "late.jsonl"))
    result = run(copy, "import", str(tmp_path / "late.jsonl"))
    assert result.exit_code == 1
    assert "starts at seq 3, but this log ends at seq 0" in result.output
    assert rows(copy) == [] and head > 2


# Export format and both forms of data


def test_exported_data_is_an_object_whose_fields_can_be_read(db_path, tmp_path):
    report(db_path, cpu="10.00")
    events = [json.loads(line) for line in export_lines(db_path, tmp_path / "log.jsonl")]
    reported = [event["data"] for event in events if event["type"] == "UsageReported"]
    assert [(data["type"], data["amount"]) for data in reported] == [("cpu", "10.00")]
    assert all(isinstance(event["data"], dict) for event in events)


def test_the_exported_hash_covers_the_canonical_form_of_the_data_object(db_path, tmp_path):
    report(db_path, cpu="10.00")
    previous = "0" * 64
    for line in export_lines(db_path, tmp_path / "log.jsonl"):
        event = json.loads(line)
        content = {name: value for name, value in event.items() if name not in ("prev_hash", "hash")}
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert event["prev_hash"] == previous
        assert hashlib.sha256((previous + text).encode()).hexdigest() == event["hash"]
        previous = event["hash"]


@pytest.mark.parametrize("form", ["object", "string"])
def test_an_export_of_each_form_of_data_imports_and_verifies(db_path, tmp_path, form):
    report(db_path, cpu="10.00", ram="2.00")
    lines = export_lines(db_path, tmp_path / "log.jsonl")
    if form == "string":  # as exports were written before data became an object
        lines = [canonical(event | {"data": canonical(event["data"])}) + "\n" for event in map(json.loads, lines)]
        assert all(isinstance(json.loads(line)["data"], str) for line in lines)
    copy = str(tmp_path / "copy.db")
    result = run(copy, "import", write(tmp_path / f"{form}.jsonl", lines))
    assert result.exit_code == 0, result.output
    assert rows(copy) == rows(db_path)
    assert run(copy, "verify").exit_code == 0


def test_an_export_since_a_seq_past_the_end_is_empty(db_path, tmp_path):
    for since in ("99999999999999999999", str(len(rows(db_path)))):
        result = run(db_path, "export", "--since", since, "--output", str(tmp_path / "empty.jsonl"))
        assert result.exit_code == 0, result.output
        assert "exported 0 event(s)" in result.output
        assert (tmp_path / "empty.jsonl").read_text() == ""


# Poisoned imports


def forged(lines: list[str], data: dict | None = None, data_as_text: bool = False, **columns) -> str:
    """A line that continues the export's chain, its hash recomputed: a usage report, its data
    updated with `data`; a column given as a function of the last event is called with it.
    `data_as_text` writes the data in the older form, as a string."""
    last = json.loads(lines[-1])
    event = {
        "seq": last["seq"] + 1, "event_id": uuid.uuid4().hex, "stream": f"usage/{RESOURCE}/cpu/2026-03",
        "version": 1, "type": "UsageReported", "schema_version": 1, "occurred_at": MARCH, "recorded_at": MARCH,
        "actor_id": 1, "prev_hash": last["hash"],
        "data": {"resource_uuid": RESOURCE, "type": "cpu", "billing_period": "2026-03-01",
                 "plan_period_uuid": PLAN_PERIOD, "amount": "10.00", "description": "",
                 "missing_usage_policy": "none"},
    }
    event.update({name: value(last, lines) if callable(value) else value for name, value in columns.items()})
    if "version" not in columns:  # the next of its stream
        event["version"] = 1 + sum(json.loads(line)["stream"] == event["stream"] for line in lines)
    if data is not None:
        event["data"] = {**event["data"], **data} if event["type"] == "UsageReported" else data
    line = event | {"hash": chain_hash(event["prev_hash"], event)}
    return canonical(line | {"data": canonical(line["data"])} if data_as_text else line) + "\n"


def period_started(period: str, starts_at: str, zone: str = "UTC", stream: str | None = None) -> dict:
    return {"type": "BillingPeriodStarted", "stream": stream or f"period/{period[:7]}",
            "data": {"billing_period": period, "starts_at": starts_at, "timezone": zone}}


def user(**fields) -> dict:
    return {"type": "UserDefined", "stream": "user/9",
            "data": {"id": 9, "username": "nine", "is_staff": False, "is_support": False, "token_sha256": None} | fields}


POISONS = {
    "a month 13": dict(data={"billing_period": "2026-13-01"}),
    "a period not on the first": dict(data={"billing_period": "2026-03-15"}),
    "a period the views cannot carry on from": dict(
        data={"billing_period": "9999-12-01"}, stream=f"usage/{RESOURCE}/cpu/9999-12"),
    "an amount that is not a number": dict(data={"amount": "lots"}),
    "an amount written as a JSON number": dict(data={"amount": 10}),
    "an amount that is NaN": dict(data={"amount": float("nan")}),
    "an actor id of 2**70": dict(actor_id=2**70),
    "an actor id of true": dict(actor_id=True),
    "a seq of 1.0": dict(seq=lambda last, lines: float(last["seq"] + 1)),
    "a version written as a string": dict(version="1"),
    "a version that skips one": dict(version=4),
    "a report on another record's stream": dict(stream=f"usage/{RESOURCE}/ram/2026-03"),
    "an occurred_at that is not a stored datetime": dict(occurred_at="yesterday"),
    "a prev_hash that is not a hash": dict(prev_hash=lambda last, lines: last["hash"].upper()),
    "a duplicate event id": dict(event_id=lambda last, lines: json.loads(lines[0])["event_id"]),
    "a user id of 2**70": user(id=2**70),
    "a user whose is_staff is 1": user(is_staff=1),
    "data that is a list": dict(type="CustomerDefined", stream="customer/x", data=["not", "an", "object"]),
    "a garbage billing period started": period_started("2026-04", "2026-04-01T00:00:00.000000Z"),
    "a billing period started in an unknown zone": period_started(
        "2026-04-01", "2026-04-01T00:00:00.000000Z", "Mars/Olympus"),
    "a billing period started at the wrong instant": period_started("2026-04-01", "2026-04-01T05:00:00.000000Z"),
    "a billing period started before the clock reached it": period_started(
        "2990-01-01", "2990-01-01T00:00:00.000000Z"),
    "the last billing period there can be": dict(
        **period_started("9999-12-01", "9999-12-01T00:00:00.000000Z"), recorded_at="9999-12-31T00:00:00.000000Z"),
    "a billing period started under another month's stream": period_started(
        "2026-03-01", "2026-03-01T00:00:00.000000Z", stream="period/2026-09"),
}


@pytest.mark.parametrize("poison", POISONS)
@pytest.mark.parametrize("data_as_text", [False, True], ids=["data object", "data string"])
def test_a_poisoned_import_is_refused_whole_and_the_ledger_keeps_working(db_path, client, tmp_path, poison,
                                                                         data_as_text):
    report(db_path, cpu="10.00")
    lines = export_lines(db_path, tmp_path / "log.jsonl")
    valid = forged(lines, data={"amount": "11.00"}, data_as_text=data_as_text)
    poisoned_line = forged([*lines, valid], data_as_text=data_as_text, **POISONS[poison])
    poisoned = write(tmp_path / "poisoned.jsonl", [valid, poisoned_line])
    before = rows(db_path)
    result = run(db_path, "import", poisoned)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: import refused, nothing written: line 2"), result.output
    assert rows(db_path) == before
    body = {"resource": RESOURCE, "usages": [{"type": "ram", "amount": "3.00"}]}
    assert client.post(SET_USAGE, json=body, headers=auth("staff")).status_code == 201
    for command in (["verify"], ["rebuild"], ["export", "--output", str(tmp_path / "after.jsonl")]):
        assert run(db_path, *command).exit_code == 0, command


def test_a_forged_but_valid_continuation_is_accepted_and_verifies(db_path, tmp_path):
    report(db_path, cpu="10.00")
    lines = export_lines(db_path, tmp_path / "log.jsonl")
    march = forged(lines, data={"amount": "11.00"})
    april = forged([*lines, march], **period_started("2026-04-01", "2026-04-01T00:00:00.000000Z"),
                   recorded_at="2026-04-01T00:00:01.000000Z")
    result = run(db_path, "import", write(tmp_path / "more.jsonl", [*lines, march, april]))
    assert result.exit_code == 0, result.output
    assert "imported 2 event(s)" in result.output
    assert {(r["billing_period"], r["usage"]) for r in all_records(db_path) if r["type"] == "cpu"} == {
        ("2026-03-01", "11.00")}
    assert run(db_path, "verify").exit_code == 0


def test_a_served_ledger_refuses_a_poisoned_import_and_serves_a_valid_one(live_server, db_path, tmp_path):
    lines = export_lines(db_path, tmp_path / "log.jsonl")
    march = forged(lines, data={"amount": "7.00"})
    poisoned = forged([*lines, march], data={"billing_period": "2026-13-01"})
    with AuthenticatedClient(base_url=live_server, token=token("staff")) as staff:
        refused = run(db_path, "import", write(tmp_path / "poisoned.jsonl", [*lines, march, poisoned]))
        assert refused.exit_code == 1
        assert count_usages.sync(client=staff) == 0
        accepted = run(db_path, "import", write(tmp_path / "valid.jsonl", [*lines, march]))
        assert f"imported 1 event(s), skipped {len(lines)} already here" in accepted.output
        (record,) = list_usages.sync(client=staff, type_="cpu")
        assert record.usage == "7.00"
        item = ComponentUsageItemRequest(type_="cpu", amount="8")
        body = ComponentUsageCreateRequest(resource=uuid.UUID(RESOURCE), usages=[item])
        assert set_usage.sync_detailed(client=staff, body=body).status_code == 201
        (record,) = list_usages.sync(client=staff, type_="cpu")
        assert record.usage == "8.00"
    assert run(db_path, "verify").exit_code == 0
