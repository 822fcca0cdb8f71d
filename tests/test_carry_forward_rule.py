"""The carry-forward rule on plain records: a chain and its months in, the carried records it wants out."""

import datetime as dt

from ledger.log.events import usage_record_uuid
from ledger.rules import clock
from ledger.rules.carry_forward import Carried, Chain, carried_records

from .world import PLAN_PERIOD, RESOURCE

PLAN = {"uuid": PLAN_PERIOD, "start": "2025-01-01T00:00:00.000000Z", "end": None}


def month(text: str) -> dt.date:
    return dt.date.fromisoformat(f"{text}-01")


def record(period: str, usage: str, policy: str, carried: bool = False) -> dict:
    """A record of the resource's storage in a month (YYYY-MM), reported on its 10th or carried into it."""
    starts_at = clock.stored(clock.period_start(month(period), "UTC"))
    date = starts_at if carried else f"{period}-10T08:00:00.000000Z"
    return {
        "uuid": usage_record_uuid(RESOURCE, "storage", f"{period}-01"), "resource_uuid": RESOURCE,
        "offering_uuid": "0c000000000000000000000000000001", "type": "storage", "billing_period": f"{period}-01",
        "plan_period_uuid": PLAN_PERIOD, "usage": usage, "description": "nightly", "missing_usage_policy": policy,
        "date": date, "created": date, "modified_by": 3, "carried": int(carried), "version": 0 if carried else 1,
    }


def walk(records: list[dict], start: str, last: str, plan_periods: tuple[dict, ...] = (PLAN,),
         terminated_at: str | None = None, whole_chain: bool = False, zone: str = "UTC") -> list[Carried]:
    chain = Chain({r["billing_period"]: r for r in records}, list(plan_periods), terminated_at)
    return carried_records(chain, month(start), month(last), zone, whole_chain)


def outcome(changes: list[Carried]) -> dict[str, tuple | None]:
    """Month (YYYY-MM) -> (usage, policy) of each carried record to write; uuid -> None of each to remove."""
    return {
        (change.record["billing_period"][:7] if change.record else change.uuid):
            (change.record["usage"], change.record["missing_usage_policy"]) if change.record else None
        for change in changes
    }


def test_reuse_carries_the_value_into_every_started_month_through_the_last():
    changes = walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-04")
    assert outcome(changes) == {"2026-02": ("5.00", "reuse"), "2026-03": ("5.00", "reuse"), "2026-04": ("5.00", "reuse")}


def test_a_carried_record_keeps_the_source_fields_and_is_dated_at_its_month_start():
    (change,) = walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-02")
    assert change.uuid == change.record["uuid"] == usage_record_uuid(RESOURCE, "storage", "2026-02-01")
    assert change.record == {
        **record("2026-01", "5.00", "reuse"), "uuid": change.uuid, "billing_period": "2026-02-01",
        "date": "2026-02-01T00:00:00.000000Z", "created": "2026-02-01T00:00:00.000000Z", "carried": 1,
        "version": 0,  # a carried record's stream has no event
    }


def test_month_starts_are_those_of_the_time_zone_given():
    (change,) = walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-02", zone="Europe/Helsinki")
    assert change.record["date"] == change.record["created"] == "2026-01-31T22:00:00.000000Z"


def test_zero_carries_zero_with_its_policy():
    changes = walk([record("2026-01", "5.00", "zero")], "2026-02", "2026-03")
    assert outcome(changes) == {"2026-02": ("0.00", "zero"), "2026-03": ("0.00", "zero")}


def test_none_carries_nothing():
    assert walk([record("2026-01", "5.00", "none")], "2026-02", "2026-04") == []


def test_no_record_before_the_walk_carries_nothing():
    assert walk([], "2026-02", "2026-04") == []


def test_no_started_month_in_the_walk_carries_nothing():
    assert walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-01") == []


def test_a_real_report_wins_and_stops_the_walk():
    corrected = [record("2026-01", "9.00", "reuse"), record("2026-02", "5.00", "reuse", carried=True),
                 record("2026-03", "3.00", "reuse"), record("2026-04", "7.00", "reuse", carried=True)]
    assert outcome(walk(corrected, "2026-02", "2026-05")) == {"2026-02": ("9.00", "reuse")}


def test_across_the_whole_chain_the_months_after_a_real_report_follow_it():
    corrected = [record("2026-01", "9.00", "reuse"), record("2026-02", "5.00", "reuse", carried=True),
                 record("2026-03", "3.00", "zero"), record("2026-04", "7.00", "zero", carried=True)]
    changes = walk(corrected, "2026-02", "2026-05", whole_chain=True)
    assert outcome(changes) == {"2026-02": ("9.00", "reuse"), "2026-04": ("0.00", "zero"), "2026-05": ("0.00", "zero")}


def test_a_report_with_policy_none_between_removes_the_carried_records_after_it():
    chain = [record("2026-01", "5.00", "reuse"), record("2026-02", "2.00", "none"),
             record("2026-03", "5.00", "reuse", carried=True), record("2026-04", "5.00", "reuse", carried=True)]
    changes = walk(chain, "2026-03", "2026-04")
    assert changes == [Carried(chain[2]["uuid"], None), Carried(chain[3]["uuid"], None)]


def test_the_walk_stops_at_the_first_month_already_as_wanted_unless_the_whole_chain_is_asked_for():
    chain = [record("2026-01", "5.00", "reuse"), record("2026-02", "5.00", "reuse", carried=True)]
    assert walk(chain, "2026-02", "2026-03") == []
    assert outcome(walk(chain, "2026-02", "2026-03", whole_chain=True)) == {"2026-03": ("5.00", "reuse")}


def test_a_month_no_plan_covers_stops_the_chain_even_where_a_later_plan_starts():
    plans = ({**PLAN, "end": "2026-03-01T00:00:00.000000Z"},
             {"uuid": "0e0000000000000000000000000000b2", "start": "2026-04-01T00:00:00.000000Z", "end": None})
    chain = [record("2026-01", "5.00", "reuse"), record("2026-03", "5.00", "reuse", carried=True)]
    changes = walk(chain, "2026-02", "2026-05", plan_periods=plans)
    assert outcome(changes) == {"2026-02": ("5.00", "reuse"), chain[1]["uuid"]: None}


def test_a_plan_ending_within_a_month_still_covers_it():
    plans = ({**PLAN, "end": "2026-03-15T00:00:00.000000Z"},)
    changes = walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-05", plan_periods=plans)
    assert outcome(changes) == {"2026-02": ("5.00", "reuse"), "2026-03": ("5.00", "reuse")}


def test_termination_stops_the_chain_from_the_first_month_starting_after_it():
    chain = [record("2026-01", "5.00", "reuse"), *(record(p, "5.00", "reuse", carried=True)
                                                  for p in ("2026-02", "2026-03", "2026-04"))]
    changes = walk(chain, "2026-02", "2026-04", terminated_at="2026-02-15T00:00:00.000000Z", whole_chain=True)
    assert changes == [Carried(chain[2]["uuid"], None), Carried(chain[3]["uuid"], None)]


def test_a_month_starting_at_the_termination_itself_gets_nothing():
    changes = walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-03", terminated_at="2026-03-01T00:00:00.000000Z")
    assert outcome(changes) == {"2026-02": ("5.00", "reuse")}


def test_reopening_resumes_the_chain_in_every_month_since():
    changes = walk([record("2026-01", "5.00", "reuse")], "2026-02", "2026-04", whole_chain=True)
    assert outcome(changes) == {"2026-02": ("5.00", "reuse"), "2026-03": ("5.00", "reuse"), "2026-04": ("5.00", "reuse")}
