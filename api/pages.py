"""The web page for people at `/`: sign in with a token, then read usage totals per billing month,
charts of each component's usage over the last twelve months, a resource's records and each
record's history, and the log's head.

Read-only and rendered on the server. The token is kept in an HttpOnly cookie, never in a URL,
and every figure shown is limited to what that token may read, as the API limits it.
"""

import datetime as dt
from decimal import Decimal

from flask import Blueprint, g, redirect, render_template, request, url_for

from ledger import history
from ledger.log.events import usage_record_uuid
from ledger.rules import clock
from ledger.rules.access import Caller
from projections import catalog, reports, usages

from .auth import known_caller
from .reading import read_scopes
from .requests import reads_nothing

blueprint = Blueprint("pages", __name__, template_folder="templates", static_folder="static", static_url_path="/static")

COOKIE = "ledger_token"
CHART_MONTHS = 12
# A page per kind of scope (named as its catalog table): the records' column naming it, the word for
# people, and the totals shown beneath its charts (by what).
SCOPES = {
    "customers": ("customer_uuid", "Customer", ("project", "resource")),
    "projects": ("project_uuid", "Project", ("resource",)),
    "offerings": ("offering_uuid", "Offering", ("customer", "resource")),
    "resources": ("resource_uuid", "Resource", ()),
}
SECURITY_HEADERS = {
    # Every script and style is the ledger's own: nothing from elsewhere runs, nothing inline runs.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
                               " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "Cache-Control": "no-store",  # the figures are the signed-in user's
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


@blueprint.after_request
def secure(response):
    response.headers.update(SECURITY_HEADERS)
    return response


@blueprint.app_template_filter("figure")
def figure(usage: str) -> str:
    """A usage as people read it: thousands separated, two decimals."""
    return f"{Decimal(usage):,.2f}"


@blueprint.app_template_filter("when")
def when(stored: str | None) -> str:
    """A stored UTC time as people read it, to the second."""
    return f"{stored[:10]} {stored[11:19]} UTC" if stored else ""


def signed_in() -> Caller | None:
    token = request.cookies.get(COOKIE)
    return known_caller(g.ledger.conn, token) if token else None


def page(template: str, caller: Caller, status: int = 200, **context):
    seq, head_hash = g.ledger.store.head()
    return render_template(template, viewer=caller, head_seq=seq, head_hash=head_hash, **context), status


def problem(caller: Caller, status: int, title: str, message: str):
    return page("problem.html", caller, status, title=title, message=message)


def chosen_period() -> dt.date | None:
    """The billing month of `?period=YYYY-MM`, this month without one; None when it is not a month."""
    text = request.args.get("period")
    try:
        return clock.parse_month(text) if text else clock.billing_period(clock.now())
    except ValueError:
        return None


@blueprint.route("/", methods=["GET"])
def overview():
    caller = signed_in()
    if caller is None:
        return render_template("signin.html")
    period = chosen_period()
    if period is None:
        return problem(caller, 400, "Not a month", "Choose a month as YYYY-MM, e.g. 2026-03.")
    scopes = read_scopes(caller)
    totals = {by: reports.period_totals(g.ledger.conn, scopes, period, by) for by in ("customer", "project", "offering")}
    return page("overview.html", caller, period=period, months=month_steps(period), totals=totals)


@blueprint.route("/sign-in", methods=["POST"])
def sign_in():
    token = request.form.get("token", "").strip()
    if not token or known_caller(g.ledger.conn, token) is None:
        return render_template("signin.html", error="That token is not valid."), 401
    response = redirect(url_for("pages.overview"), 303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure)
    return response


@blueprint.route("/sign-out", methods=["POST"])
@reads_nothing
def sign_out():
    response = redirect(url_for("pages.overview"), 303)
    response.delete_cookie(COOKIE, httponly=True, samesite="Strict", secure=request.is_secure)
    return response


@blueprint.route("/<any(customers, projects, offerings, resources):kind>/<uuid:scope_uuid>/", methods=["GET"])
def scope_page(kind, scope_uuid):
    """A customer, project, offering or resource: charts of the last twelve months and the month's totals."""
    caller = signed_in()
    if caller is None:
        return redirect(url_for("pages.overview"), 303)
    column, word, breakdown = SCOPES[kind]
    conn, scopes, filters = g.ledger.conn, read_scopes(caller), {column: scope_uuid}
    name = catalog.name(conn, kind, scope_uuid)
    if name is None or (scopes is not None and not usages.count(conn, scopes, filters)):
        return problem(caller, 404, "Not found", f"There is no {word.lower()} here that you may read.")
    period = chosen_period()
    if period is None:
        return problem(caller, 400, "Not a month", "Choose a month as YYYY-MM, e.g. 2026-03.")
    last = clock.billing_period(clock.now())
    months = [last]
    while len(months) < CHART_MONTHS:
        months.insert(0, clock.previous_period(months[0]))
    series = reports.monthly_totals(conn, scopes, filters, months[0], last)
    records = []
    if kind == "resources":
        records = [
            record | {"carried": bool(usages.stored_record(conn, record["uuid"])["carried"])}
            for record in usages.records(conn, scopes, filters, ["-billing_period"], usages.EVERY)
        ]
    return page(
        "scope.html", caller, kind=kind, word=word, name=name, scope_uuid=scope_uuid, period=period,
        months=month_steps(period), charts=charts(series, months), records=records,
        totals={by: reports.period_totals(conn, scopes, period, by, filters) for by in breakdown},
    )


@blueprint.route("/records/<uuid:record_uuid>/", methods=["GET"])
def record_page(record_uuid):
    """One usage record and its history: who reported what, when, and the value it replaced."""
    caller = signed_in()
    if caller is None:
        return redirect(url_for("pages.overview"), 303)
    conn = g.ledger.conn
    rows = usages.records(conn, read_scopes(caller), {"uuid": record_uuid}, [], 1)
    if not rows:
        return problem(caller, 404, "Not found", "There is no usage record here that you may read.")
    record = rows[0]
    entries = history.audit(g.ledger, record["resource_uuid"], record["type"], record["billing_period"][:7])
    source = usages.carried_from(conn, record["resource_uuid"], record["type"], record["billing_period"])
    carried_from = source and {
        "period": source[:7], "uuid": usage_record_uuid(record["resource_uuid"], record["type"], source),
    }
    return page("record.html", caller, record=record, entries=entries, carried_from=carried_from)


def month_steps(period: dt.date) -> dict[str, str]:
    """The months before and after `period`, as YYYY-MM, for the month picker's arrows."""
    return {"previous": f"{clock.previous_period(period):%Y-%m}", "next": f"{clock.next_period(period):%Y-%m}",
            "this": f"{period:%Y-%m}"}


def charts(series: list[dict], months: list[dt.date]) -> list[dict]:
    """One chart per component: its usage in each of `months` (0 where it has none)."""
    labels = [f"{month:%Y-%m}" for month in months]
    found: dict[tuple[str, str], dict] = {}
    for row in series:
        chart = found.setdefault((row["type"], row["measured_unit"]), {
            "type": row["type"], "name": row["name"], "unit": row["measured_unit"], "labels": labels,
            "values": [0.0] * len(labels),
        })
        chart["values"][labels.index(row["billing_period"][:7])] = float(row["usage"])
    return list(found.values())
