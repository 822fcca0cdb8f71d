"""The web page in a real headless Chromium (Debian's, driven by Playwright) against a live `ledger serve`
holding the demo's data: sign in, a customer's chart drawn, a record's history, and what the token may
not read absent. Screenshots are kept in tests/artifacts/browser/ (git-ignored)."""

from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

from ledger import demo
from ledger.commands import tokens
from ledger.commands.catalog import load
from ledger.database import Ledger

from .serving import LedgerServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).parent / "artifacts" / "browser"
# The fewest painted pixels (any opacity) of the page's charts: 0 for a blank canvas. Chart.js draws
# once its script has run and again when the canvas takes its size, so a test waits for this.
LEAST_PAINTED = """() => Math.min(...Array.from(document.querySelectorAll("canvas[data-chart]"), canvas => {
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] > 0) painted++; }
  return painted;
}))"""


def wait_for_charts(page: Page, count: int) -> None:
    """Until the page has `count` charts and each is drawn (bars, axes and labels: many pixels)."""
    page.wait_for_function("count => document.querySelectorAll('canvas[data-chart]').length === count", arg=count)
    page.wait_for_function(f"least => ({LEAST_PAINTED})() > least", arg=500)


@pytest.fixture
def demo_server(tmp_path, now):
    """`ledger serve` over the demo's data (seeded on 15 March 2026); yields its URL and a token of
    Climate Institute's owner."""
    path = str(tmp_path / "demo.db")
    ledger = Ledger(path)
    ledger.init()
    load(ledger, demo.catalog_text())
    demo.seed_usage(ledger)
    _, token = tokens.issue_token(ledger, "climate-owner")
    ledger.close()
    with LedgerServer(path, workers=1) as server:
        yield server.url, token


@pytest.fixture
def browser():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


ELSEWHERE: list[str] = []  # the requests a page made to anywhere but the ledger


def offline_page(browser, url: str, **context_options) -> Page:
    """A page whose every request to anywhere but the ledger fails, as with no internet, and is noted."""
    context = browser.new_context(**context_options)

    def only_the_ledger(route):
        if route.request.url.startswith(url):
            route.continue_()
        else:
            ELSEWHERE.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_ledger)
    return context.new_page()


@pytest.fixture(autouse=True)
def nothing_from_elsewhere():
    """Every page of a test needed nothing but the ledger."""
    ELSEWHERE.clear()
    yield
    assert ELSEWHERE == []


def sign_in(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("table.totals")


def test_a_customers_owner_reads_totals_a_chart_and_a_records_history(browser, demo_server):
    url, token = demo_server
    page = offline_page(browser, url, viewport={"width": 1366, "height": 900})
    sign_in(page, url, token)
    assert token not in page.url
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # scripts cannot read the token
    overview = page.inner_text("main")
    assert "Climate Institute" in overview and "Ocean models" in overview
    assert "Genomics Lab" not in overview and "Arctic Observatory" not in overview
    assert page.inner_text("#log-head").startswith("seq ")
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)

    page.click("table[data-by=customer] >> text=Climate Institute")
    wait_for_charts(page, 2)  # cpu_hours and storage
    assert page.evaluate(LEAST_PAINTED) > 500
    page.screenshot(path=str(SCREENSHOTS / "customer.png"), full_page=True)

    page.click("table[data-by=resource] >> text=ocean-alloc-01")
    page.wait_for_selector("table.records")
    page.click("table.records >> tr:has-text('storage'):has-text('carried') >> a")
    page.wait_for_selector("table.history")
    history = page.inner_text("table.history")
    assert "carried" in history and "800.00" in history
    assert "carried from 2026-01" in page.inner_text(".note")
    page.click(".note a")  # to the record the value is carried from
    page.wait_for_selector("table.history")
    assert "root" in page.inner_text("table.history")
    page.screenshot(path=str(SCREENSHOTS / "record-history.png"), full_page=True)


def test_what_the_token_may_not_read_is_absent(browser, demo_server):
    url, token = demo_server
    page = offline_page(browser, url)
    sign_in(page, url, token)
    response = page.goto(f"{url}/customers/2b3c4d5e6f7a48299b0c1d2e3f4a5b6c/")  # Genomics Lab
    assert response.status == 404
    assert "Genomics Lab" not in page.content() and "seq-alloc-01" not in page.content()
    page.goto(f"{url}/?period=2026-03")
    assert "seq-alloc-01" not in page.content() and "Sequencing" not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "not-readable.png"), full_page=True)


def test_the_page_fits_a_phone(browser, demo_server):
    url, token = demo_server
    page = offline_page(browser, url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    sign_in(page, url, token)
    page.click("table[data-by=customer] >> text=Climate Institute")
    wait_for_charts(page, 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # wide tables scroll inside their card
    page.screenshot(path=str(SCREENSHOTS / "phone-customer.png"), full_page=True)


def test_api_docs_render_with_no_internet(browser, demo_server):
    url, _ = demo_server
    page = offline_page(browser, url)
    page.goto(f"{url}/api/docs/")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.inner_text(".swagger-ui")
    assert "/api/marketplace-component-usages/set_usage/" in paths and "/api/usage-totals/" in paths
    page.screenshot(path=str(SCREENSHOTS / "api-docs.png"), full_page=True)
