"""Billing periods and carried-forward values."""

import datetime as dt
import json
import tempfile
import threading
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger.cli import load_catalog
from ledger.commands import usage
from ledger.database import Ledger
from ledger.log.events import usage_record_uuid
from ledger.rules import clock
from ledger.rules.access import Caller
from projections import runner, usages

from .conftest import ON_BOTH_BACKENDS, auth
from .world import OTHER_RESOURCE, RESOURCE, catalog_document

STAFF = Caller(id=1, username="staff", is_staff=True)
PROVIDER = Caller(id=3, username="provider-owner", customers_owned=frozenset({"0a000000000000000000000000000001"}))


def report(ledger, amount, policy="none", kind="storage", resource=RESOURCE, date=None, caller=STAFF):
    item = usage.UsageItem(type=kind, amount=f"{amount:.2f}", missing_usage_policy=policy)
    usage.set_usage(ledger, caller, usage.SetUsage(items=[item], resource_uuid=resource, date=date))


def chain(ledger, kind="storage", resource=RESOURCE) -> dict[str, tuple]:
    """billing period -> (usage, policy, carried) of one (resource, component)."""
    rows = ledger.conn.execute(
        "SELECT billing_period, usage, missing_usage_policy, carried FROM component_usages"
        " WHERE resource_uuid = ? AND type = ? ORDER BY billing_period",
        (resource, kind),
    )
    return {period[:7]: (value, policy, bool(carried)) for period, value, policy, carried in rows}


def month(now, ledger, when: str):
    """Moves the clock and lets the ledger start the months it entered."""
    now(when)
    ledger.roll_periods()


def test_reuse_carries_the_value_and_policy_into_every_later_month(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    month(now, ledger, "2026-04-02T00:00:00Z")
    assert chain(ledger) == {
        "2026-01": ("5.00", "reuse", False),
        "2026-02": ("5.00", "reuse", True),
        "2026-03": ("5.00", "reuse", True),
        "2026-04": ("5.00", "reuse", True),
    }


def test_zero_carries_zero_with_policy_zero(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "zero")
    month(now, ledger, "2026-03-02T00:00:00Z")
    assert chain(ledger) == {
        "2026-01": ("5.00", "zero", False),
        "2026-02": ("0.00", "zero", True),
        "2026-03": ("0.00", "zero", True),
    }


def test_none_carries_nothing(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5)
    month(now, ledger, "2026-03-02T00:00:00Z")
    assert chain(ledger) == {"2026-01": ("5.00", "none", False)}


def test_a_report_replaces_a_carried_value_and_keeps_its_uuid(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    month(now, ledger, "2026-02-03T00:00:00Z")
    uuid = usage_record_uuid(RESOURCE, "storage", "2026-02-01")
    report(ledger, 8, "reuse")
    assert chain(ledger)["2026-02"] == ("8.00", "reuse", False)
    assert ledger.conn.execute("SELECT COUNT(*) FROM component_usages WHERE uuid = ?", (uuid,)).fetchone()[0] == 1


def test_late_correction_changes_three_later_months(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    month(now, ledger, "2026-04-10T00:00:00Z")
    report(ledger, 9, "reuse", date=clock.parse_datetime("2026-01-20T00:00:00Z"))
    assert chain(ledger) == {
        "2026-01": ("9.00", "reuse", False),
        "2026-02": ("9.00", "reuse", True),
        "2026-03": ("9.00", "reuse", True),
        "2026-04": ("9.00", "reuse", True),
    }


def test_backfilled_report_between_removes_carried_values_that_no_longer_follow(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    month(now, ledger, "2026-04-10T00:00:00Z")
    report(ledger, 2, "none", date=clock.parse_datetime("2026-02-15T00:00:00Z"))
    assert chain(ledger) == {"2026-01": ("5.00", "reuse", False), "2026-02": ("2.00", "none", False)}


def test_real_report_with_none_ends_the_chain(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    month(now, ledger, "2026-03-05T00:00:00Z")
    report(ledger, 3, "none")
    month(now, ledger, "2026-05-05T00:00:00Z")
    assert chain(ledger) == {
        "2026-01": ("5.00", "reuse", False),
        "2026-02": ("5.00", "reuse", True),
        "2026-03": ("3.00", "none", False),
    }


def test_nothing_is_carried_into_months_starting_after_termination(ledger, now, catalog):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    now("2026-02-15T00:00:00Z")
    catalog["resources"][0]["state"] = "Terminated"
    load_catalog(ledger, json.dumps(catalog))
    month(now, ledger, "2026-04-10T00:00:00Z")
    assert chain(ledger) == {"2026-01": ("5.00", "reuse", False), "2026-02": ("5.00", "reuse", True)}


def test_reopening_a_terminated_resource_resumes_carrying(ledger, now, catalog):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    now("2026-01-20T00:00:00Z")
    catalog["resources"][0]["state"] = "Terminated"
    load_catalog(ledger, json.dumps(catalog))
    month(now, ledger, "2026-03-10T00:00:00Z")
    assert chain(ledger) == {"2026-01": ("5.00", "reuse", False)}
    catalog["resources"][0]["state"] = "OK"
    load_catalog(ledger, json.dumps(catalog))
    assert chain(ledger) == {
        "2026-01": ("5.00", "reuse", False), "2026-02": ("5.00", "reuse", True), "2026-03": ("5.00", "reuse", True),
    }


def test_carried_record_dates_and_author(client, ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse", caller=PROVIDER)
    month(now, ledger, "2026-02-10T00:00:00Z")
    (carried,) = client.get(
        "/api/marketplace-component-usages/", query_string={"billing_period": "2026-02-01"}, headers=auth("staff")
    ).get_json()
    assert carried["uuid"] == usage_record_uuid(RESOURCE, "storage", "2026-02-01")
    assert carried["date"] == carried["created"] == "2026-02-01T00:00:00Z"
    assert carried["modified_by"] == PROVIDER.id
    assert carried["recurring"] is True and carried["usage"] == "5.00"


def test_writes_start_the_months_the_clock_has_entered(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    now("2026-03-10T00:00:00Z")
    report(ledger, 1, kind="cpu")
    assert set(chain(ledger)) == {"2026-01", "2026-02", "2026-03"}


def test_rollover_is_idempotent_under_two_concurrent_rollers(db_path, now):
    now("2026-07-01T00:00:01Z")
    barrier = threading.Barrier(2)
    results = []

    def roll():
        ledger = Ledger(db_path)
        barrier.wait()
        results.append(len(ledger.roll_periods()))
        ledger.close()

    threads = [threading.Thread(target=roll) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger = Ledger(db_path)
    started = [e.data["billing_period"] for e in ledger.store.read() if e.type == "BillingPeriodStarted"]
    ledger.close()
    assert sorted(results) == [0, 4]
    assert started == ["2026-03-01", "2026-04-01", "2026-05-01", "2026-06-01", "2026-07-01"]


def test_roll_period_command_is_idempotent(db_path, now):
    from click.testing import CliRunner

    from ledger.cli import cli

    now("2026-05-02T00:00:00Z")
    first = CliRunner().invoke(cli, ["--db", db_path, "roll-period"])
    second = CliRunner().invoke(cli, ["--db", db_path, "roll-period"])
    assert first.exit_code == 0 and "2026-05-01" in first.output and "2026-04-01" in first.output
    assert second.exit_code == 0 and "no billing period to start" in second.output


def test_month_boundary_in_a_non_utc_time_zone(tmp_path, monkeypatch, now):
    monkeypatch.setenv("LEDGER_TIMEZONE", "Europe/Helsinki")
    now("2026-01-15T12:00:00Z")
    ledger = Ledger(str(tmp_path / "helsinki.db"))
    ledger.init()
    load_catalog(ledger, json.dumps(catalog_document()))
    report(ledger, 4, "reuse")
    # 22:30 UTC on 31 January is 00:30 on 1 February in Helsinki: February has begun.
    month(now, ledger, "2026-01-31T22:30:00Z")
    assert chain(ledger) == {"2026-01": ("4.00", "reuse", False), "2026-02": ("4.00", "reuse", True)}
    row = ledger.conn.execute("SELECT date FROM component_usages WHERE billing_period = '2026-02-01'").fetchone()
    assert row[0] == "2026-01-31T22:00:00.000000Z"
    # date filters follow the UTC calendar date of `date`.
    assert usages.count(ledger.conn, None, {"date_after": dt.date(2026, 1, 31), "date_before": dt.date(2026, 1, 31)}) == 1
    ledger.close()


def test_rebuild_reproduces_carried_records(ledger, now):
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    report(ledger, 6, "zero", kind="ram")
    month(now, ledger, "2026-03-10T00:00:00Z")
    report(ledger, 1, "reuse", date=clock.parse_datetime("2026-02-01T00:00:00Z"))
    before = ledger.conn.execute("SELECT * FROM component_usages ORDER BY uuid").fetchall()
    runner.rebuild(ledger.store)
    assert ledger.conn.execute("SELECT * FROM component_usages ORDER BY uuid").fetchall() == before


# --- a property test: the inline projection equals a rebuild and a reference model of the rules ---

MONTHS = [dt.date(2026, m, 1) for m in range(1, 8)]
RESOURCES = (RESOURCE, OTHER_RESOURCE)
KINDS = {RESOURCE: ("storage", "cpu"), OTHER_RESOURCE: ("cpu",)}

operations = st.lists(
    st.one_of(
        st.tuples(st.just("report"), st.sampled_from(RESOURCES), st.integers(0, 1), st.integers(-5, 50),
                  st.sampled_from(["none", "reuse", "zero"]), st.integers(0, 3)),
        st.tuples(st.just("roll")),
        st.tuples(st.just("terminate"), st.sampled_from(RESOURCES)),
    ),
    max_size=25,
)


def reference(reports: dict, started: list, terminated_at: dict) -> dict:
    """The carry-forward rules, computed from scratch: (resource, type, period) -> (usage, policy, carried)."""
    expected = {}
    last = max(started)
    for resource, kind in {(r, k) for r, k, _ in reports}:
        periods = sorted(p for r, k, p in reports if (r, k) == (resource, kind))
        period, source = periods[0], None
        while period <= max(last, periods[-1]):
            if (resource, kind, period) in reports:
                value, policy = reports[(resource, kind, period)]
                source = expected[(resource, kind, period)] = (value, policy, False)
            else:
                starts_at = clock.stored(clock.period_start(period))
                allowed = period <= last and (resource not in terminated_at or starts_at < terminated_at[resource])
                source = None if not (allowed and source and source[1] != "none") else (
                    source[0] if source[1] == "reuse" else "0.00", source[1], True)
                if source:
                    expected[(resource, kind, period)] = source
            period = clock.next_period(period)
    return expected


def view(ledger) -> dict:
    rows = ledger.conn.execute(
        "SELECT resource_uuid, type, billing_period, usage, missing_usage_policy, carried FROM component_usages"
    )
    return {(r, k, dt.date.fromisoformat(p)): (u, pol, bool(c)) for r, k, p, u, pol, c in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_projection_equals_rebuild_and_reference_model(monkeypatch, steps):
    # Up to three chains go on at a month's start: read in chunks of two, a chunk's end falls among them.
    monkeypatch.setattr(usages, "chains_read_together", lambda conn: 2)
    with tempfile.TemporaryDirectory() as folder:
        month_index = 0
        monkeypatch.setenv("LEDGER_NOW", "2026-01-05T00:00:00Z")
        ledger = Ledger(str(Path(folder) / "property.db"))
        ledger.init()
        catalog = catalog_document()
        load_catalog(ledger, json.dumps(catalog))
        reports, terminated_at = {}, {}
        for step in steps:
            if step[0] == "roll" and month_index < len(MONTHS) - 1:
                month_index += 1
                monkeypatch.setenv("LEDGER_NOW", f"{MONTHS[month_index]:%Y-%m}-05T00:00:00Z")
                ledger.roll_periods()
            elif step[0] == "terminate" and step[1] not in terminated_at:
                for resource in catalog["resources"]:
                    if resource["uuid"] == step[1]:
                        resource["state"] = "Terminated"
                load_catalog(ledger, json.dumps(catalog))
                terminated_at[step[1]] = clock.stored(clock.now())
            elif step[0] == "report":
                _, resource, kind_index, amount, policy, months_back = step
                kind = KINDS[resource][kind_index % len(KINDS[resource])]
                period = MONTHS[max(0, month_index - months_back)]
                date = None if period == MONTHS[month_index] else dt.datetime(period.year, period.month, 2, tzinfo=dt.timezone.utc)
                try:
                    report(ledger, amount, policy, kind=kind, resource=resource, date=date)
                except usage.UsageRejected:
                    assert resource in terminated_at
                    continue
                reports[(resource, kind, period)] = (f"{amount:.2f}", policy)
        started = [dt.date.fromisoformat(e.data["billing_period"]) for e in ledger.store.read() if e.type == "BillingPeriodStarted"]
        incremental = view(ledger)
        event(f"carried records: {'some' if any(c for _, _, c in incremental.values()) else 'none'}")
        assert incremental == (reference(reports, started, terminated_at) if reports else {})
        runner.rebuild(ledger.store)
        assert view(ledger) == incremental
        ledger.close()


def views_rows(ledger) -> dict[str, list]:
    """The usage records and user usages, without their row ids (PostgreSQL's skip numbers an upsert took)."""
    return {
        "records": ledger.conn.execute(
            f"SELECT {', '.join(usages.COLUMNS)} FROM component_usages ORDER BY uuid").fetchall(),
        "user_usages": ledger.conn.execute(
            "SELECT uuid, component_usage_uuid, username, usage, user_uuid, created, modified, date, type"
            " FROM component_user_usages ORDER BY uuid").fetchall(),
    }


@ON_BOTH_BACKENDS
def test_a_batch_folds_its_reports_as_folding_them_one_by_one(ledger, now):
    """A batch writes the records of reports that carry nothing together (projections/usages.py). Folded
    report by report, then again as one batch by a rebuild: a record reported twice, a carried one
    taken over, a user usage of a record that a report just made, and a backfill whose carrying reads
    the records gathered before it must come out the same."""
    month(now, ledger, "2026-01-10T00:00:00Z")
    report(ledger, 5, "reuse")
    month(now, ledger, "2026-04-02T00:00:00Z")
    now("2026-04-03T00:00:00Z")
    report(ledger, 7, "reuse")  # takes the carried April record over: `created` is this report's
    report(ledger, 3, "none", kind="cpu", resource=OTHER_RESOURCE)
    now("2026-04-04T00:00:00Z")
    report(ledger, 8, "reuse")  # the same record again: `created` stays the first report's
    made = usage_record_uuid(OTHER_RESOURCE, "cpu", "2026-04-01")  # by the report above: read by the user usage
    usage.set_user_usages(ledger, STAFF, usage.SetUserUsages(made, [usage.UserUsageItem("alice", "2.00")], bulk=True))
    now("2026-04-05T00:00:00Z")
    report(ledger, 9, "reuse", date=clock.parse_datetime("2026-02-20T00:00:00Z"))  # carries into March, not April
    report(ledger, 4, "reuse", kind="cpu", resource=OTHER_RESOURCE)
    folded = views_rows(ledger)
    record = usage_record_uuid(RESOURCE, "storage", "2026-04-01")
    assert [row[9] for row in folded["records"] if row[0] == record] == ["8.00"]
    assert len(folded["user_usages"]) == 1
    runner.rebuild(ledger.store)
    assert views_rows(ledger) == folded
    assert chain(ledger)["2026-03"] == ("9.00", "reuse", True)

