"""`ledger demo`: a realistic catalog and usage, a printed staff token and a curl line that works."""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from ledger import demo
from ledger.catalog import load
from ledger.database import Ledger
from projections import usages

from .conftest import free_port


def test_demo_catalog_loads_and_seeds_usage_once(tmp_path):
    ledger = Ledger(str(tmp_path / "demo.db"))
    ledger.init()
    assert load(ledger, demo.catalog_text()) > 0
    demo.seed_usage(ledger)
    demo.seed_usage(ledger)
    assert usages.count(ledger.conn, None, {}) == 4
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
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        token_line, curl_line = process.stdout.readline(), process.stdout.readline()
        token = re.fullmatch(r"staff token: ([0-9a-f]{40})\n", token_line).group(1)
        assert f"-H 'Authorization: Token {token}' http://127.0.0.1:{port}/api/marketplace-component-usages/" in curl_line
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/marketplace-component-usages/", headers={"Authorization": f"Token {token}"}
        )
        status, body = get_when_up(request)
        assert status == 200 and len(body) == 4
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
