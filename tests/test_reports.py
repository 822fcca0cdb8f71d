"""Period totals (`ledger report`, GET /api/usage-totals/): checked against sums the test makes itself."""

import datetime as dt
import json
import urllib.request
from decimal import Decimal

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.commands import usage
from ledger.rules.access import Caller

from .conftest import ON_BOTH_BACKENDS, auth
from .world import CLIENT, OFFERING, OTHER_CLIENT, OTHER_OFFERING, OTHER_PROJECT, OTHER_RESOURCE, PROJECT, RESOURCE

pytestmark = ON_BOTH_BACKENDS

THIRD_RESOURCE = "0d000000000000000000000000000009"
STAFF = Caller(id=1, username="staff", is_staff=True)
# resource -> (customer, project, offering), with the names the catalog gives them.
PLACES = {
    RESOURCE: ((CLIENT, "Client Org"), (PROJECT, "Climate"), (OFFERING, "HPC"), "alloc-01"),
    THIRD_RESOURCE: ((CLIENT, "Client Org"), (PROJECT, "Climate"), (OTHER_OFFERING, "Cloud"), "alloc-03"),
    OTHER_RESOURCE: ((OTHER_CLIENT, "Other Org"), (OTHER_PROJECT, "Genomics"), (OTHER_OFFERING, "Cloud"), "alloc-02"),
}
UNITS = {"cpu": "h", "storage": "GB"}


@pytest.fixture
def catalog(catalog):
    """The test world with a second resource of the client's project, on the other offering."""
    catalog["resources"].append({
        "uuid": THIRD_RESOURCE, "name": "alloc-03", "offering_uuid": OTHER_OFFERING, "project_uuid": PROJECT,
        "state": "OK", "plan_periods": [{"uuid": "0e000000000000000000000000000009",
                                         "start": "2025-01-01T00:00:00Z", "end": None}],
    })
    return catalog


def report(ledger, resource: str, kind: str, amount: str, policy: str = "none", date: str | None = None) -> None:
    command = usage.SetUsage(
        items=[usage.UsageItem(type=kind, amount=amount, missing_usage_policy=policy)], resource_uuid=resource,
        date=dt.datetime.fromisoformat(date) if date else None,
    )
    usage.set_usage(ledger, STAFF, command)


FEBRUARY = "2026-02-10T00:00:00+00:00"


@pytest.fixture
def history(ledger):
    """February reported late, March reported now, then two late corrections of February; returns
    each record's final usage as the test knows it: {(period, resource, type): usage}."""
    report(ledger, RESOURCE, "cpu", "10.25", date=FEBRUARY)
    report(ledger, RESOURCE, "storage", "100.00", "reuse", date=FEBRUARY)
    report(ledger, THIRD_RESOURCE, "cpu", "5.50", date=FEBRUARY)
    report(ledger, OTHER_RESOURCE, "cpu", "7.00", "zero", date=FEBRUARY)
    report(ledger, RESOURCE, "cpu", "20.10")
    report(ledger, THIRD_RESOURCE, "cpu", "0.01")
    report(ledger, RESOURCE, "storage", "150.05", "reuse", date=FEBRUARY)  # carried into March as corrected
    report(ledger, RESOURCE, "cpu", "11.75", date=FEBRUARY)
    return {
        ("2026-02", RESOURCE, "cpu"): "11.75", ("2026-02", RESOURCE, "storage"): "150.05",
        ("2026-02", THIRD_RESOURCE, "cpu"): "5.50", ("2026-02", OTHER_RESOURCE, "cpu"): "7.00",
        ("2026-03", RESOURCE, "cpu"): "20.10", ("2026-03", RESOURCE, "storage"): "150.05",  # carried
        ("2026-03", THIRD_RESOURCE, "cpu"): "0.01", ("2026-03", OTHER_RESOURCE, "cpu"): "0.00",  # carried as zero
    }


def expected_totals(records: dict, period: str, by: str, customers: set[str] | None = None) -> list[dict]:
    """The totals summed here, from what the test reported, per group and type."""
    level = ("customer", "project", "offering", "resource").index(by)
    sums: dict[tuple, list] = {}
    for (month, resource, kind), amount in records.items():
        place = PLACES[resource]
        if month != period or (customers is not None and place[0][0] not in customers):
            continue
        group = (resource, place[3]) if by == "resource" else place[level]
        total = sums.setdefault((group[1], group[0], kind), [Decimal(0), 0])
        total[0] += Decimal(amount)
        total[1] += 1
    return [
        {"period": period, f"{by}_uuid": uuid, f"{by}_name": name, "type": kind, "measured_unit": UNITS[kind],
         "usage": f"{total:.2f}", "records": count}
        for (name, uuid, kind), (total, count) in sorted(sums.items())
    ]


def run(db_path: str, *args: str):
    result = CliRunner().invoke(cli, ["--db", db_path, *args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("by", ["customer", "project", "offering", "resource"])
@pytest.mark.parametrize("period", ["2026-02", "2026-03"])
def test_report_totals_equal_the_sums_of_what_was_reported(history, db_path, by, period):
    rows = json.loads(run(db_path, "report", "--period", period, "--by", by, "--json"))
    assert rows == expected_totals(history, period, by)


def test_report_sums_two_records_of_one_customer_and_type(history, db_path):
    rows = json.loads(run(db_path, "report", "--period", "2026-02", "--by", "customer", "--json"))
    client_cpu = next(row for row in rows if row["customer_uuid"] == CLIENT and row["type"] == "cpu")
    assert (client_cpu["usage"], client_cpu["records"]) == ("17.25", 2)


def test_report_defaults_to_this_month(history, db_path):
    assert run(db_path, "report", "--by", "offering") == run(db_path, "report", "--by", "offering", "--period", "2026-03")


def test_report_table_csv_and_lines(history, db_path):
    table = run(db_path, "report", "--period", "2026-03", "--by", "project").splitlines()
    assert table[0].split() == ["period", "project_uuid", "project_name", "type", "measured_unit", "usage", "records"]
    assert table[2].split() == ["2026-03", PROJECT, "Climate", "cpu", "h", "20.11", "2"]
    csv_lines = run(db_path, "report", "--period", "2026-03", "--by", "project", "--csv").splitlines()
    assert csv_lines[0] == "period,project_uuid,project_name,type,measured_unit,usage,records"
    assert csv_lines[1] == f"2026-03,{PROJECT},Climate,cpu,h,20.11,2"
    lines = run(db_path, "report", "--period", "2026-03", "--by", "project", "--nl").splitlines()
    assert [json.loads(line) for line in lines] == expected_totals(history, "2026-03", "project")


def test_report_of_a_month_without_records_prints_only_a_csv_header(history, db_path):
    assert run(db_path, "report", "--period", "2025-06", "--csv") == (
        "period,customer_uuid,customer_name,type,measured_unit,usage,records\n"
    )


def test_report_refuses_a_month_not_written_yyyy_mm(db_path):
    result = CliRunner().invoke(cli, ["--db", db_path, "report", "--period", "2026-3"])
    assert result.exit_code == 2 and "not a month as YYYY-MM" in result.output


@pytest.mark.parametrize("by", ["customer", "project", "offering", "resource"])
def test_usage_totals_endpoint_gives_staff_the_report(history, client, by):
    response = client.get(f"/api/usage-totals/?period=2026-02&by={by}", headers=auth("staff"))
    assert response.status_code == 200
    assert response.get_json() == expected_totals(history, "2026-02", by)


@pytest.mark.parametrize("by", ["customer", "resource"])
def test_a_customers_owner_sees_only_their_rows(history, client, by):
    for owner, customer in (("consumer-owner", CLIENT), ("other-owner", OTHER_CLIENT)):
        response = client.get(f"/api/usage-totals/?period=2026-03&by={by}", headers=auth(owner))
        assert response.get_json() == expected_totals(history, "2026-03", by, {customer})


def test_usage_totals_for_a_stranger_are_empty(history, client):
    response = client.get("/api/usage-totals/?period=2026-03", headers=auth("stranger"))
    assert (response.status_code, response.get_json()) == (200, [])


def test_usage_totals_refuse_bad_parameters_naming_each(client):
    response = client.get("/api/usage-totals/?period=March&by=planet", headers=auth("staff"))
    assert response.status_code == 400
    assert response.get_json() == {"period": ["Enter a valid month as YYYY-MM."], "by": ['"planet" is not a valid choice.']}


def test_usage_totals_need_a_token(client):
    assert client.get("/api/usage-totals/").status_code == 401


def test_report_table_of_a_month_without_records_says_so_on_stderr(history, db_path):
    result = CliRunner().invoke(cli, ["--db", db_path, "report", "--period", "2025-06"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no rows\n")


def test_usage_totals_from_a_live_server_with_the_token_in_the_query(live_server):
    body = json.dumps({"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "3.30"}]}).encode()
    request = urllib.request.Request(f"{live_server}/api/marketplace-component-usages/set_usage/", data=body,
                                     headers={"Authorization": "Token staff-token", "Content-Type": "application/json"})
    assert urllib.request.urlopen(request, timeout=10).status == 201
    for owner, expected in (("consumer-owner", ["3.30"]), ("other-owner", [])):
        url = f"{live_server}/api/usage-totals/?by=resource&period=2026-03&x-auth-token={owner}-token"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert [row["usage"] for row in json.loads(response.read())] == expected
