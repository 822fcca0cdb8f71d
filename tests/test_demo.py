"""`ledger demo`: a realistic catalog and usage, a printed staff token and a curl line that works."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

from ledger import demo
from ledger.commands.catalog import load
from ledger.database import Ledger
from ledger.log.events import usage_record_uuid, usage_stream
from projections import usages

from .serving import free_port, stop_group


def test_demo_catalog_loads_and_seeds_usage_once(tmp_path):
    ledger = Ledger(str(tmp_path / "demo.db"))
    ledger.init()
    assert load(ledger, demo.catalog_text()) > 0
    demo.seed_usage(ledger)
    demo.seed_usage(ledger)
    assert usages.count(ledger.conn, None, {}) == 31
    roles = {(role["scope"], role["role"]) for role in json.loads(demo.catalog_text())["roles"]}
    assert roles == {("customer", "owner"), ("customer", "manager"), ("project", "admin"),
                     ("project", "manager"), ("project", "member"), ("offering", "manager")}
    ledger.close()


def get_when_up(request, attempts: int = 100) -> tuple[int, list]:
    """The JSON answer to `request` once the server listens (it prints before it serves)."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status, json.loads(response.read())
        except OSError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def test_demo_prints_a_token_and_a_curl_line_that_lists_records(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key != "LEDGER_NOW"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger", "--db", str(tmp_path / "demo.db"), "demo", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        token_line, curl_line = process.stdout.readline(), process.stdout.readline()
        token = re.fullmatch(r"staff token: ([0-9a-f]{40})\n", token_line).group(1)
        assert f"-H 'Authorization: Token {token}' http://127.0.0.1:{port}/api/marketplace-component-usages/" in curl_line
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/marketplace-component-usages/", headers={"Authorization": f"Token {token}"}
        )
        status, body = get_when_up(request)
        assert status == 200 and len(body) == 10  # a first page of this month's and last month's records
    finally:
        stop_group(process)


@pytest.fixture
def demo_ledger(tmp_path, now):
    """The demo's catalog and history, seeded on 15 March 2026."""
    ledger = Ledger(str(tmp_path / "demo.db"))
    ledger.init()
    load(ledger, demo.catalog_text())
    demo.seed_usage(ledger)
    yield ledger
    ledger.close()


def test_demo_history_spans_six_months_and_three_consumer_customers(demo_ledger):
    records = usages.records(demo_ledger.conn, None, {}, [], -1)
    assert {record["billing_period"] for record in records} == {
        "2025-10-01", "2025-11-01", "2025-12-01", "2026-01-01", "2026-02-01", "2026-03-01",
    }
    assert {record["customer_name"] for record in records} == {"Climate Institute", "Genomics Lab", "Arctic Observatory"}


def test_demo_history_has_carried_values_a_late_correction_and_users_shares(demo_ledger):
    conn = demo_ledger.conn
    carried = conn.execute("SELECT billing_period, usage, missing_usage_policy FROM component_usages WHERE carried"
                           " AND resource_uuid = ? AND type = 'storage' ORDER BY billing_period", (demo.ICE,)).fetchall()
    assert carried == [(month, "250.00", "reuse") for month in ("2026-01-01", "2026-02-01", "2026-03-01")]
    corrected = usage_record_uuid(demo.SEQUENCING, "cpu_hours", "2026-01-01")
    assert [e.data["amount"] for e in demo_ledger.store.read_stream(usage_stream(demo.SEQUENCING, "cpu_hours", "2026-01-01"))] == [
        "305.00", "287.40"]
    assert usages.records(conn, None, {"uuid": corrected}, [], 1)[0]["usage"] == "287.40"
    shares = conn.execute("SELECT username, usage FROM component_user_usages ORDER BY date, username").fetchall()
    assert shares == [("alice", "726.00"), ("bob", "484.00"), ("alice", "650.50")]
