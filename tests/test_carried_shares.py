"""A user usage reported on a carried record: the value it freezes and the date it keeps."""

import datetime as dt
import threading

import pytest

from ledger.database import Ledger
from ledger.log import events
from ledger.rules import clock

from .conftest import auth
from .world import RESOURCE

SET_USAGE = "/api/marketplace-component-usages/set_usage/"
TRIALS = 20


@pytest.fixture
def catalog(catalog):
    """The test catalog with the resource's plan starting in 2020, so that trials have months to spare."""
    catalog["resources"][0]["plan_periods"][0]["start"] = "2020-01-01T00:00:00Z"
    return catalog


def backfill(client, month: dt.date, amount: str):
    body = {"resource": RESOURCE, "date": f"{month}T10:00:00Z",
            "usages": [{"type": "cpu", "amount": amount, "missing_usage_policy": "reuse"}]}
    return client.post(SET_USAGE, json=body, headers=auth("staff"))


def share(client, month: dt.date, username: str = "alice", date: str | None = None):
    record = events.usage_record_uuid(RESOURCE, "cpu", month.isoformat())
    body = {"username": username, "usage": "1.00", **({"date": date} if date else {})}
    return client.post(f"/api/marketplace-component-usages/{record}/set_user_usage/", json=body, headers=auth("staff"))


def record_row(db_path: str, month: dt.date) -> dict:
    ledger = Ledger(db_path)
    try:
        ledger.reach_views()
        row = ledger.conn.execute(
            "SELECT usage, carried, date FROM component_usages WHERE uuid = ?",
            (events.usage_record_uuid(RESOURCE, "cpu", month.isoformat()),),
        ).fetchone()
        return dict(zip(("usage", "carried", "date"), row))
    finally:
        ledger.close()


def frozen_and_held(db_path: str, month: dt.date) -> tuple[str, str]:
    """The amount the next month's own report froze, and the month's amount just before it in log order."""
    month_stream = events.usage_stream(RESOURCE, "cpu", month.isoformat())
    next_stream = events.usage_stream(RESOURCE, "cpu", clock.next_period(month).isoformat())
    held = None
    ledger = Ledger(db_path)
    try:
        for event in ledger.store.read():
            if event.stream == month_stream:
                held = event.data["amount"]
            elif event.stream == next_stream and event.type == "UsageReported":
                return event.data["amount"], held
    finally:
        ledger.close()
    raise AssertionError("the next month was never reported")


def race(app, month: dt.date, trial: int) -> list[int]:
    """Five corrections of `month` and one share on the next month's record, started together."""
    start = threading.Barrier(6)
    answers = []

    def run(action):
        start.wait()
        answers.append(action(app.test_client()).status_code)

    actions = [lambda c, a=f"{200 + n}.00": backfill(c, month, a) for n in range(5)]
    actions.append(lambda c: share(c, clock.next_period(month), f"user-{trial}"))
    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_a_share_freezes_a_value_the_month_before_held_while_corrections_race_it(app, db_path):
    """Each trial, on a month of its own (going back in time, so that a trial carries into one month only):
    staff backfills the month with `reuse` at 100, the next month is carried; then five corrections of
    the month race one share on the next month's carried record through the group committer, as the
    server runs it. The next month freezes the value the month held at that point of the log."""
    month = dt.date(2026, 1, 1)
    for trial in range(TRIALS):
        client = app.test_client()
        assert backfill(client, month, "100.00").status_code == 201
        assert record_row(db_path, clock.next_period(month))["carried"] == 1
        assert race(app, month, trial) == [201] * 6
        frozen, held = frozen_and_held(db_path, month)
        assert frozen == held, f"{clock.next_period(month)} froze {frozen} while {month} held {held}"
        month = clock.previous_period(clock.previous_period(month))


def test_a_share_on_a_carried_record_keeps_the_periods_start_as_its_date(client, db_path):
    month = dt.date(2026, 1, 1)
    assert backfill(client, month, "100.00").status_code == 201
    carried = record_row(db_path, clock.next_period(month))
    assert share(client, clock.next_period(month)).status_code == 201
    reported = record_row(db_path, clock.next_period(month))
    assert (reported["carried"], reported["usage"], reported["date"]) == (0, "100.00", carried["date"])
    assert carried["date"] == clock.stored(clock.period_start(clock.next_period(month)))
    listed = client.get("/api/marketplace-component-usages/?date_before=2026-02-01&billing_period=2026-02-01",
                        headers=auth("staff")).get_json()
    assert [row["usage"] for row in listed] == ["100.00"]


def test_a_dated_share_on_a_carried_record_keeps_the_periods_start_as_its_date(client, db_path):
    month = dt.date(2026, 1, 1)
    assert backfill(client, month, "100.00").status_code == 201
    carried = record_row(db_path, dt.date(2026, 2, 1))
    assert share(client, dt.date(2026, 3, 1), date="2026-02-10T08:00:00Z").status_code == 201
    assert record_row(db_path, dt.date(2026, 2, 1)) == {**carried, "carried": 0}


def test_users_sum_on_a_carried_zero_record_keeps_the_periods_start_as_its_date(client, db_path):
    body = {"resource": RESOURCE, "date": "2026-01-10T00:00:00Z",
            "usages": [{"type": "cpu", "amount": "0", "missing_usage_policy": "zero"}]}
    assert client.post(SET_USAGE, json=body, headers=auth("staff")).status_code == 201
    carried = record_row(db_path, dt.date(2026, 2, 1))
    record = events.usage_record_uuid(RESOURCE, "cpu", "2026-02-01")
    shares = {"usages": [{"username": "ann", "usage": "4"}, {"username": "ben", "usage": "2"}]}
    response = client.post(f"/api/marketplace-component-usages/{record}/set_user_usages/", json=shares,
                           headers=auth("staff"))
    assert response.status_code == 201
    assert record_row(db_path, dt.date(2026, 2, 1)) == {**carried, "carried": 0, "usage": "6.00"}
