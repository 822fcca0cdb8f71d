"""Moving a ledger from a SQLite file to PostgreSQL, as the README tells operators: verify and keep
the head, export, import into the new database, verify it against the kept head."""

import datetime as dt
import re

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.database import Ledger
from projections import reports

from .test_postgres_cli import demo_ledger

pytestmark = pytest.mark.postgresql


def run(db: str, *args: str):
    result = CliRunner().invoke(cli, ["--db", db, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def sqlite_ledger(tmp_path, now):
    """The demo's ledger (catalog, half a year of usage, carried values, user shares) in a SQLite file."""
    return demo_ledger(str(tmp_path / "ledger.db"))


def totals(db: str) -> dict:
    """Every month's totals by customer, as `ledger report` adds them up."""
    ledger = Ledger(db)
    try:
        months = [dt.date.fromisoformat(row[0]) for row in ledger.conn.execute(
            "SELECT DISTINCT billing_period FROM component_usages ORDER BY 1")]
        return {month: reports.period_totals(ledger.conn, None, month, "customer") for month in months}
    finally:
        ledger.close()


def test_a_ledger_moved_from_sqlite_to_postgresql_ends_at_the_same_head_with_the_same_totals(
        sqlite_ledger, postgres_url, tmp_path):
    head = re.search(r"^head: (\d+) ([0-9a-f]{64})$", run(sqlite_ledger, "verify"), re.M).groups()
    exported = str(tmp_path / "ledger.jsonl")
    run(sqlite_ledger, "export", "--output", exported)
    run(postgres_url, "import", exported)
    verified = run(postgres_url, "verify", "--head", ":".join(head))
    assert f"head: {head[0]} {head[1]}" in verified
    assert "views identical to a rebuild from the log" in verified
    assert totals(postgres_url) == totals(sqlite_ledger) != {}
