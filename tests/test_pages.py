"""The web page for people (Flask's client): sign-in by cookie, totals, charts' data, records and their
history, all limited to what the token may read. tests/test_browser.py drives it in a real browser."""

import json
import re

import pytest

from ledger.commands import usage
from ledger.log.events import usage_record_uuid
from ledger.rules.access import Caller
from ledger.rules.clock import parse_datetime

from .conftest import ON_BOTH_BACKENDS
from .world import CLIENT, OTHER_CLIENT, OTHER_PROJECT, OTHER_RESOURCE, PROJECT, RESOURCE, token

pytestmark = ON_BOTH_BACKENDS

STAFF = Caller(id=1, username="staff", is_staff=True)


@pytest.fixture
def reported(ledger, now):
    """cpu reported for both clients in February (alloc-01's later corrected), storage carried into March."""
    def report(resource, kind, amount, policy="none", date=None):
        item = usage.UsageItem(type=kind, amount=amount, missing_usage_policy=policy)
        usage.set_usage(ledger, STAFF, usage.SetUsage(items=[item], resource_uuid=resource, date=date))

    february = parse_datetime("2026-02-10T00:00:00Z")
    report(RESOURCE, "cpu", "1200.50", date=february)
    report(RESOURCE, "storage", "300.00", "reuse", date=february)
    report(OTHER_RESOURCE, "cpu", "77.00", date=february)
    report(RESOURCE, "cpu", "40.25")
    report(RESOURCE, "cpu", "1250.75", date=february)


def sign_in(client, username: str):
    response = client.post("/sign-in", data={"token": token(username)})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    return response


def served(client, path: str) -> bool:
    """Whether a static asset is served (the file's response is closed after)."""
    with client.get(path) as response:
        return response.status_code == 200 and len(response.get_data()) > 0


def text(response) -> str:
    return response.get_data(as_text=True)


def test_the_page_asks_for_a_token_first(client):
    response = client.get("/")
    assert response.status_code == 200 and 'name="token"' in text(response)
    assert client.get(f"/customers/{CLIENT}/").status_code == 303


def test_signing_in_keeps_the_token_in_an_http_only_cookie_not_the_url(client):
    cookie = sign_in(client, "consumer-owner").headers["Set-Cookie"]
    assert cookie.startswith(f"ledger_token={token('consumer-owner')};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "consumer-owner" in text(client.get("/"))


def test_a_wrong_token_is_refused_and_sets_no_cookie(client):
    response = client.post("/sign-in", data={"token": "guess"})
    assert response.status_code == 401 and "Set-Cookie" not in response.headers
    assert "That token is not valid." in text(response)


def test_signing_out_forgets_the_token(client):
    sign_in(client, "staff")
    client.post("/sign-out")
    assert 'name="token"' in text(client.get("/"))


def test_overview_shows_a_months_totals_by_customer_project_and_offering(client, reported):
    sign_in(client, "staff")
    page = text(client.get("/?period=2026-02"))
    for name in ("Client Org", "Other Org", "Climate", "Genomics", "HPC", "Cloud"):
        assert name in page
    assert "1,250.75" in page and "300.00" in page and "77.00" in page


def test_overview_shows_only_what_the_token_may_read(client, reported):
    sign_in(client, "consumer-owner")
    page = text(client.get("/?period=2026-02"))
    assert "Client Org" in page and "1,250.75" in page
    assert "Other Org" not in page and "Genomics" not in page and "77.00" not in page


def test_overview_shows_the_logs_head(client, ledger, reported):
    sign_in(client, "support")
    seq, head = ledger.store.head()
    assert re.search(rf"seq <strong>{seq}</strong> · <code>{head}</code>", text(client.get("/")))


def test_a_customer_page_charts_each_component_over_twelve_months(client, reported):
    sign_in(client, "consumer-owner")
    page = text(client.get(f"/customers/{CLIENT}/"))
    charts = json.loads(re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', page, re.S).group(1))
    by_type = {chart["type"]: chart for chart in charts}
    assert by_type["cpu"]["labels"][0] == "2025-04" and by_type["cpu"]["labels"][-1] == "2026-03"
    assert by_type["cpu"]["values"][-2:] == [1250.75, 40.25]
    assert by_type["storage"]["values"][-2:] == [300.0, 300.0]  # March's is carried
    assert "chart.umd.min.js" in page


def test_a_resource_page_lists_its_records_with_carried_ones_marked(client, reported):
    sign_in(client, "project-member")
    page = text(client.get(f"/resources/{RESOURCE}/"))
    carried = usage_record_uuid(RESOURCE, "storage", "2026-03-01")
    row = re.search(rf'<tr>\s*<td><a href="/records/{carried}/">2026-03</a>.*?</tr>', page, re.S).group(0)
    assert "300.00" in row and "carried" in row


def test_a_records_history_shows_who_changed_what_and_when(client, reported):
    sign_in(client, "provider-owner")
    page = text(client.get(f"/records/{usage_record_uuid(RESOURCE, 'cpu', '2026-02-01')}/"))
    rows = re.findall(r"<tr class=\"\">(.*?)</tr>", page, re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    assert [(c[3], c[4], c[6]) for c in cells] == [("staff", "–", "1,200.50"), ("staff", "1,200.50", "1,250.75")]


def test_a_carried_records_history_is_marked_and_points_at_its_source(client, reported):
    sign_in(client, "staff")
    page = text(client.get(f"/records/{usage_record_uuid(RESOURCE, 'storage', '2026-03-01')}/"))
    assert '<span class="badge carried">carried</span>' in page
    assert f'href="/records/{usage_record_uuid(RESOURCE, "storage", "2026-02-01")}/">2026-02</a>' in page


@pytest.mark.parametrize("path", [
    f"/customers/{OTHER_CLIENT}/", f"/projects/{OTHER_PROJECT}/", f"/resources/{OTHER_RESOURCE}/",
    f"/records/{usage_record_uuid(OTHER_RESOURCE, 'cpu', '2026-02-01')}/",
])
def test_what_the_token_may_not_read_is_not_found(client, reported, path):
    sign_in(client, "consumer-owner")
    response = client.get(path)
    assert response.status_code == 404 and "Other Org" not in text(response)


def test_a_bad_month_is_a_400_page(client):
    sign_in(client, "staff")
    response = client.get("/?period=2026-13")
    assert response.status_code == 400 and "Choose a month as YYYY-MM" in text(response)


def test_pages_load_only_the_ledgers_own_scripts(client, reported):
    sign_in(client, "staff")
    response = client.get(f"/projects/{PROJECT}/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    sources = re.findall(r'(?:src|href)="([^"]+)"', text(response))
    assert sources and all(source.startswith("/") for source in sources)
    for asset in ("/static/vendor/chartjs/chart.umd.min.js", "/static/charts.js", "/static/ledger.css"):
        assert served(client, asset)


def test_api_docs_are_swagger_ui_served_locally(client):
    page = text(client.get("/api/docs/"))
    assert 'data-schema="/api/schema/"' in page
    for asset in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert asset.startswith("/static/") and served(client, asset)
