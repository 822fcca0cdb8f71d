"""GET/HEAD /api/marketplace-component-usages/ and {uuid}/: the list and retrieve rules for usage records."""

import copy
import json
import re

import pytest

from ledger.cli import load_catalog
from ledger.commands import usage
from ledger.rules.access import Caller
from projections import placement
from projections import usages as usage_view

from .conftest import (
    CATALOG_JOINS,
    ON_BOTH_BACKENDS,
    assert_first_page_work_stays_flat,
    assert_ordered_pages_are_the_plain_ones,
    assert_page_is_found_without_the_catalog,
    auth,
    caller_of,
    query_plan_of_page,
    sqlite_work,
)
from .world import (
    CLIENT,
    NON_READERS,
    OTHER_CLIENT,
    OFFERING,
    OTHER_OFFERING,
    OTHER_RESOURCE,
    PROJECT,
    PROVIDER,
    READERS,
    RESOURCE,
    USERS,
)

LIST = "/api/marketplace-component-usages/"
STAFF = Caller(id=1, username="staff", is_staff=True)


def report(ledger, resource=RESOURCE, date=None, **amounts):
    items = [usage.UsageItem(type=kind, amount=f"{amount:.2f}") for kind, amount in amounts.items()]
    usage.set_usage(ledger, STAFF, usage.SetUsage(items=items, resource_uuid=resource, date=date))


@pytest.fixture
def many(ledger, now):
    """25 records: 5 components x 5 months of one resource, plus one record of another offering."""
    for month in range(1, 6):
        now(f"2026-{month:02d}-10T08:00:00Z")
        report(ledger, cpu=month, ram=10 + month, storage=20 + month, license=30 + month)
    now("2026-05-11T08:00:00Z")
    report(ledger, resource=OTHER_RESOURCE, cpu=99)
    now("2026-05-20T00:00:00Z")


def get(client, user="staff", **params):
    return client.get(LIST, query_string=params, headers=auth(user))


def links(response) -> dict:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', response.headers["Link"])}


def test_an_offering_handed_to_another_provider_leaves_its_old_owners_list(client, ledger, many, catalog):
    """What an offering filter lets a provider's owner see is kept between requests, until the catalog changes."""
    assert len(get(client, "provider-owner", offering_uuid=OFFERING, page_size=100).get_json()) == 20
    handed_over = copy.deepcopy(catalog)
    next(o for o in handed_over["offerings"] if o["uuid"] == OFFERING)["customer_uuid"] = OTHER_CLIENT
    load_catalog(ledger, json.dumps(handed_over))
    assert get(client, "provider-owner", offering_uuid=OFFERING).get_json() == []
    assert len(get(client, "other-owner", offering_uuid=OFFERING, page_size=100).get_json()) == 20


def placement_names(record: dict) -> tuple:
    return tuple(record[key] for key in (
        "resource_name", "offering_name", "project_name", "customer_name", "name", "measured_unit"))


@ON_BOTH_BACKENDS
def test_pages_show_the_catalogs_names_as_they_are_once_it_changes(client, ledger, many, catalog):
    """The names a page shows are kept by the process, for as long as the catalog's rows are unchanged."""
    first = get(client, type="cpu", resource_uuid=RESOURCE).get_json()[0]
    assert placement_names(first) == ("alloc-01", "HPC", "Climate", "Client Org", "CPU hours", "h")
    renamed = copy.deepcopy(catalog)
    next(r for r in renamed["resources"] if r["uuid"] == RESOURCE)["name"] = "alloc-01b"
    offering = next(o for o in renamed["offerings"] if o["uuid"] == OFFERING)
    offering["name"] = "HPC II"
    next(c for c in offering["components"] if c["type"] == "cpu").update(name="Core hours", measured_unit="core-h")
    offering["components"] = [c for c in offering["components"] if c["type"] != "license"]
    next(p for p in renamed["projects"] if p["uuid"] == PROJECT)["name"] = "Climate 2"
    next(c for c in renamed["customers"] if c["uuid"] == CLIENT)["name"] = "Client Org Ltd"
    load_catalog(ledger, json.dumps(renamed))

    listed = get(client, type="cpu", resource_uuid=RESOURCE).get_json()[0]
    retrieved = client.get(f"{LIST}{first['uuid']}/", headers=auth("staff")).get_json()
    expected = ("alloc-01b", "HPC II", "Climate 2", "Client Org Ltd", "Core hours", "core-h")
    assert placement_names(listed) == placement_names(retrieved) == expected
    dropped = get(client, type="license", resource_uuid=RESOURCE).get_json()
    assert {placement_names(record)[4:] for record in dropped} == {("", "")}  # its offering has no such component now
    assert {record["offering_name"] for record in get(client, page_size=100).get_json()} == {"HPC II", "Cloud"}


def test_a_page_reads_the_catalogs_names_once_while_its_rows_are_unchanged(ledger, many, catalog):
    statements = []
    ledger.conn.set_trace_callback(statements.append)

    def catalog_reads() -> int:
        statements.clear()
        ledger.arrive()
        assert len(usage_view.records(ledger.conn, None, {}, [], 10, 0, ledger)) == 10
        return sum("FROM resources" in statement for statement in statements)

    assert catalog_reads() == 1
    assert catalog_reads() == 0
    report(ledger, cpu=7)  # a report changes no rows of the catalog
    assert catalog_reads() == 0
    next(r for r in catalog["resources"] if r["uuid"] == RESOURCE)["name"] = "alloc-01b"
    load_catalog(ledger, json.dumps(catalog))
    assert catalog_reads() == 1


def test_names_past_what_a_process_keeps_are_read_again(client, many, monkeypatch):
    monkeypatch.setattr(placement, "MAX_KEPT", 2)
    names = {RESOURCE: ("alloc-01", "HPC", "Climate", "Client Org", "CPU hours", "h"),
             OTHER_RESOURCE: ("alloc-02", "Cloud", "Genomics", "Other Org", "vCPU", "h")}
    for _ in range(2):
        assert placement_names(get(client, type="cpu", resource_uuid=RESOURCE).get_json()[0]) == names[RESOURCE]
        # a page of both resources, one's names kept and the other's not: past the limit, all are read again
        both = get(client, type="cpu", page_size=100).get_json()
        assert {record["resource_uuid"] for record in both} == set(names)
        assert all(placement_names(record) == names[record["resource_uuid"]] for record in both)


def test_list_is_a_bare_array_with_count_and_links(client, many):
    response = get(client)
    assert response.status_code == 200
    body = response.get_json()
    assert isinstance(body, list) and len(body) == 10
    assert response.headers["X-Result-Count"] == "21"
    assert links(response) == {
        "first": "http://localhost/api/marketplace-component-usages/",
        "next": "http://localhost/api/marketplace-component-usages/?page=2",
        "last": "http://localhost/api/marketplace-component-usages/?page=3",
    }


def test_middle_page_links_keep_the_filters(client, many):
    response = get(client, page=2, page_size=5, type="cpu")
    assert response.headers["X-Result-Count"] == "6"
    assert links(response) == {
        "first": "http://localhost/api/marketplace-component-usages/?page_size=5&type=cpu",
        "prev": "http://localhost/api/marketplace-component-usages/?page_size=5&type=cpu",
        "last": "http://localhost/api/marketplace-component-usages/?page_size=5&type=cpu&page=2",
    }
    assert len(response.get_json()) == 1


def test_links_keep_the_mount_point_scheme_and_port_the_request_came_through(client, many):
    """Served under a path prefix (SCRIPT_NAME) on https with a port, without LEDGER_BASE_URL."""
    response = client.get("/api/marketplace-component-usages/", query_string={"page_size": 20}, headers=auth("staff"),
                          base_url="https://ledger.example:8443/billing")
    assert links(response) == {
        "first": "https://ledger.example:8443/billing/api/marketplace-component-usages/?page_size=20",
        "next": "https://ledger.example:8443/billing/api/marketplace-component-usages/?page_size=20&page=2",
        "last": "https://ledger.example:8443/billing/api/marketplace-component-usages/?page_size=20&page=2",
    }


def test_head_gives_headers_and_no_body(client, many):
    response = client.head(LIST, headers=auth("staff"))
    assert response.status_code == 200
    assert response.headers["X-Result-Count"] == "21"
    assert response.data == b""


@pytest.mark.parametrize("size, expected", [("3", 3), ("0", 10), ("-1", 10), ("x", 10), ("1000", 21)])
def test_page_size_rules(client, many, size, expected):
    assert len(get(client, page_size=size).get_json()) == expected


def test_page_size_is_clamped_to_300(client, many):
    response = get(client, page_size=301)
    assert "page=2" not in response.headers["Link"]


@pytest.mark.parametrize("page", ["4", "0", "x", "-1"])
def test_invalid_page_is_404(client, many, page):
    response = get(client, page=page)
    assert response.status_code == 404
    assert response.get_json() == {"detail": "Invalid page."}


def test_empty_list_has_one_page(client):
    response = get(client)
    assert response.get_json() == [] and response.headers["X-Result-Count"] == "0"
    assert set(links(response)) == {"first", "last"}


def test_default_order_is_newest_first_then_type(client, many):
    body = get(client, page_size=6).get_json()
    assert [(r["resource_uuid"], r["billing_period"], r["type"]) for r in body] == [
        (OTHER_RESOURCE, "2026-05-01", "cpu"),
        (RESOURCE, "2026-05-01", "cpu"), (RESOURCE, "2026-05-01", "license"), (RESOURCE, "2026-05-01", "ram"),
        (RESOURCE, "2026-05-01", "storage"), (RESOURCE, "2026-04-01", "cpu"),
    ]


@pytest.mark.parametrize(
    "o, key",
    [("usage", lambda r: float(r["usage"])), ("-usage", lambda r: -float(r["usage"])),
     ("billing_period", lambda r: r["billing_period"]), ("missing_usage_policy", lambda r: r["missing_usage_policy"])],
)
def test_ordering(client, many, o, key):
    body = get(client, o=o, page_size=100).get_json()
    assert [key(r) for r in body] == sorted(key(r) for r in body)


def test_last_o_wins_and_unknown_o_is_400(client, many):
    body = client.get(f"{LIST}?o=-usage&o=usage&page_size=100", headers=auth("staff")).get_json()
    assert body[0]["usage"] == "1.00"
    response = get(client, o="name")
    assert response.status_code == 400 and "o" in response.get_json()


@pytest.mark.parametrize(
    "params, count",
    [
        ({"resource_uuid": RESOURCE}, 20),
        ({"resource_uuid": OTHER_RESOURCE}, 1),
        ({"resource": f"https://waldur.example/api/marketplace-resources/{RESOURCE}/"}, 20),
        ({"project_uuid": PROJECT}, 20),
        ({"type": "ram"}, 5),
        ({"billing_period": "2026-02-01"}, 4),
        ({"billing_period_month": "2", "billing_period_year": "2026"}, 4),
        ({"billing_period_month": "2", "billing_period_year": "2025"}, 0),
        ({"billing_period_month": "13", "billing_period_year": "2026"}, 0),
        ({"billing_period_month": "2.0"}, 4),
        ({"billing_period_year": "2025"}, 0),
        ({"date_after": "2026-04-10"}, 9),
        ({"date_before": "2026-01-10"}, 4),
        ({"date_after": "2026-02-10", "date_before": "2026-02-10"}, 4),
        ({"missing_usage_policy": "none"}, 21),
        ({"missing_usage_policy": "reuse"}, 0),
    ],
)
def test_filters(client, many, params, count):
    response = get(client, **params)
    assert response.status_code == 200, response.get_json()
    assert response.headers["X-Result-Count"] == str(count)


@pytest.mark.parametrize(
    "params, error",
    [
        ({"resource_uuid": "nope"}, {"resource_uuid": ["Enter a valid UUID."]}),
        ({"offering_uuid": "1234"}, {"offering_uuid": ["Enter a valid UUID."]}),
        ({"billing_period": "2026-13-01"}, {"billing_period": ["Enter a valid date."]}),
        ({"date_after": "yesterday"}, {"date_after": ["Enter a valid date."]}),
        ({"missing_usage_policy": "sometimes"},
         {"missing_usage_policy": ["Select a valid choice. sometimes is not one of the available choices."]}),
    ],
)
def test_invalid_filters_are_400(client, params, error):
    response = get(client, **params)
    assert response.status_code == 400
    assert response.get_json() == error


def test_field_selects_keys_and_ignores_unknown_ones(client, many):
    body = client.get(f"{LIST}?field=uuid&field=usage&field=bogus", headers=auth("staff")).get_json()
    assert set(body[0]) == {"uuid", "usage"}
    assert len(get(client, field="bogus").get_json()[0]) == 20


def test_record_has_every_key_in_wire_format(client, many):
    record = get(client, resource_uuid=RESOURCE, type="ram", billing_period="2026-03-01").get_json()[0]
    assert set(record) == {
        "uuid", "created", "description", "type", "name", "measured_unit", "usage", "date", "recurring",
        "missing_usage_policy", "resource_name", "resource_uuid", "offering_name", "offering_uuid", "project_name",
        "project_uuid", "customer_name", "customer_uuid", "billing_period", "modified_by",
    }
    assert re.fullmatch(r"[0-9a-f]{32}", record["uuid"])
    assert record["date"] == "2026-03-10T08:00:00Z"
    assert record["usage"] == "13.00"
    assert record["modified_by"] == 1


def test_retrieve_accepts_hex_and_hyphenated_uuids(client, many):
    uuid = get(client).get_json()[0]["uuid"]
    hyphenated = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
    for form in (uuid, hyphenated):
        response = client.get(f"{LIST}{form}/", headers=auth("staff"))
        assert response.status_code == 200 and response.get_json()["uuid"] == uuid


@pytest.mark.parametrize("user", sorted(USERS))
def test_visibility_by_role(client, ledger, now, user):
    report(ledger, cpu=1)
    uuid = get(client).get_json()[0]["uuid"]
    listed = get(client, user=user)
    retrieved = client.get(f"{LIST}{uuid}/", headers=auth(user))
    counted = client.head(LIST, headers=auth(user)).headers["X-Result-Count"]
    if user in READERS:
        assert len(listed.get_json()) == 1 and retrieved.status_code == 200 and counted == "1"
    else:
        assert user in NON_READERS
        assert listed.get_json() == [] and retrieved.status_code == 404 and counted == "0"


def test_filters_do_not_leak_other_customers_records(client, ledger):
    report(ledger, resource=OTHER_RESOURCE, cpu=1)
    assert get(client, user="consumer-owner", resource_uuid=OTHER_RESOURCE).get_json() == []
    assert get(client, user="project-admin", o="-usage").get_json() == []


def test_list_methods_other_than_get_and_head_are_405(client):
    for method in ("put", "patch", "delete", "post"):
        response = getattr(client, method)(LIST, headers=auth("staff"))
        assert response.status_code == 405
        assert response.get_json() == {"detail": f'Method "{method.upper()}" not allowed.'}


def test_paths_without_the_trailing_slash_are_served_as_json(client, many):
    response = client.get(LIST.rstrip("/"), headers=auth("staff"))
    assert response.status_code == 200 and len(response.get_json()) == 10
    uuid = response.get_json()[0]["uuid"]
    assert client.get(f"{LIST}{uuid}", headers=auth("staff")).get_json()["uuid"] == uuid


@pytest.mark.parametrize("filters", [
    {}, {"offering_uuid": OFFERING}, {"offering_uuid": OFFERING, "type": "cpu"}, {"project_uuid": PROJECT},
    {"customer_uuid": CLIENT}, {"billing_period": "2026-03-01"},
])
def test_a_filtered_page_in_the_default_order_is_read_off_an_index_without_sorting(ledger, many, filters):
    """With a million records, sorting the matches for each page would take seconds."""
    plan = query_plan_of_page(ledger.conn, lambda: usage_view.records(ledger.conn, None, filters, [], limit=10))
    assert "TEMP B-TREE" not in plan
    # in the index alone: the records an ordered scan passes over are not read from the table
    assert re.search(r"USING COVERING INDEX idx_component_usages_", plan)


def add_records(ledger, count: int, start: int = 0, policies: tuple[str, ...] = ("none",)) -> None:
    """`count` records of RESOURCE written straight into the view, each with its own date, their
    policies taken in turn from `policies`."""
    rows = [
        (f"{0xF << 124 | n:032x}", RESOURCE, OFFERING, PROVIDER, PROJECT, CLIENT, ("cpu", "ram")[n % 2],
         "2026-03-01", policies[n % len(policies)], f"2026-03-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00.{n:06d}Z")
        for n in range(start, start + count)
    ]
    with ledger.store.transaction():
        ledger.conn.executemany(
            "INSERT INTO component_usages (uuid, resource_uuid, offering_uuid, provider_uuid, project_uuid,"
            " customer_uuid, type, billing_period, plan_period_uuid, usage, description, missing_usage_policy,"
            " date, created, modified_by, carried) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', '1.00', '', ?, ?, ?, 1, 0)",
            [(*row, row[-1]) for row in rows],
        )


def plain_page(conn, scopes, filters, limit, offset, order=()):
    """The page as one query over every visible record would give it."""
    clause, params = usage_view.where(conn, scopes, filters)
    return [row[0] for row in conn.execute(
        f"SELECT u.uuid FROM component_usages u{CATALOG_JOINS} WHERE {clause}"
        f" ORDER BY {usage_view.order_by(conn, list(order))} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    )]


def ledger_caller(ledger, user: str):
    return caller_of(ledger.conn, user)


@pytest.mark.parametrize("user", ["provider-owner", "provider-manager", "offering-manager", "consumer-owner",
                                  "project-member", "other-owner"])
def test_a_callers_page_in_the_default_order_is_the_page_of_every_visible_record(ledger, many, user):
    add_records(ledger, 60)
    caller = ledger_caller(ledger, user)
    for filters in ({}, {"type": "cpu"}, {"offering_uuid": OFFERING, "type": "ram"}):
        for limit, offset in ((10, 0), (7, 5), (25, 30), (10, 90)):
            page = [row["uuid"] for row in usage_view.records(ledger.conn, caller.visible_scopes(), filters, [], limit, offset)]
            assert page == plain_page(ledger.conn, caller.visible_scopes(), filters, limit, offset)


ORDERS = (["-usage"], ["billing_period"], ["-billing_period"], ["missing_usage_policy"])


@pytest.mark.parametrize("user", ["staff", "provider-owner", "project-member", "other-owner"])
def test_an_ordered_page_is_the_page_of_every_visible_record_in_that_order(ledger, many, user):
    add_records(ledger, 60)
    scopes = None if user == "staff" else ledger_caller(ledger, user).visible_scopes()
    assert_ordered_pages_are_the_plain_ones(usage_view, plain_page, ledger.conn, scopes, ORDERS,
                                            ({}, {"offering_uuid": OFFERING, "type": "cpu"}), ((10, 0), (7, 5), (10, 90)))


@pytest.mark.parametrize("order", ORDERS)
def test_an_ordered_page_is_sorted_before_its_records_are_joined_to_the_catalog(ledger, many, order):
    """Joined while sorting, every record was looked up in five tables: 2.3 s a page for `o=-usage` at a million."""
    assert_page_is_found_without_the_catalog(ledger.conn, lambda: usage_view.records(ledger.conn, None, {}, order, 10))


CARRIED_FILTERS = (["reuse"], ["zero"], ["reuse", "zero"])


@pytest.mark.parametrize("user", ["staff", "provider-owner", "project-member"])
def test_a_filter_on_carried_policies_reads_their_own_index(ledger, many, user):
    """Through the date index or a scope's, finding the few carried records (or none) read every
    record: 1.2 s a page at a million records. A filter that takes `none` too goes on as before."""
    scopes = None if user == "staff" else ledger_caller(ledger, user).visible_scopes()
    for policies in CARRIED_FILTERS:
        filters = {"missing_usage_policy": policies}
        plan = query_plan_of_page(ledger.conn, lambda: usage_view.records(ledger.conn, scopes, filters, [], 10) or [0])
        assert "SCAN u USING INDEX idx_component_usages_carried_policies" in plan, (policies, plan)
        assert "TEMP B-TREE" not in plan or scopes, plan  # a caller's scopes' first records are merged and sorted
        plan = query_plan_of_page(ledger.conn, lambda: [usage_view.count(ledger.conn, scopes, filters)])
        assert "USING INDEX idx_component_usages_carried_policies" in plan and "MULTI-INDEX OR" not in plan, plan
    filters = {"missing_usage_policy": ["none", "reuse"]}
    plan = query_plan_of_page(ledger.conn, lambda: usage_view.records(ledger.conn, scopes, filters, [], 10))
    assert "carried_policies" not in plan


@pytest.mark.parametrize("user", ["staff", "provider-owner", "project-member", "other-owner"])
def test_a_filter_on_policies_counts_and_lists_the_records_of_those_policies(ledger, many, user):
    add_records(ledger, 90, policies=("none", "reuse", "none", "zero", "reuse"))
    scopes = None if user == "staff" else ledger_caller(ledger, user).visible_scopes()
    visible = {uuid for uuid, in ledger.conn.execute(
        f"SELECT u.uuid FROM component_usages u WHERE {usage_view.visibility(ledger.conn, scopes)[0]}",
        usage_view.visibility(ledger.conn, scopes)[1])}
    for policies in (*CARRIED_FILTERS, ["none"], ["none", "zero"]):
        kept = [uuid for uuid, policy in ledger.conn.execute(
            "SELECT uuid, missing_usage_policy FROM component_usages u ORDER BY date DESC, type, uuid")
            if policy in policies and uuid in visible]
        filters = {"missing_usage_policy": policies}
        assert usage_view.count(ledger.conn, scopes, filters) == len(kept), policies
        for limit, offset in ((10, 0), (7, 5), (25, 30)):
            page = [row["uuid"] for row in usage_view.records(ledger.conn, scopes, filters, [], limit, offset)]
            assert page == kept[offset:offset + limit], (policies, limit, offset)
    if user != "other-owner":
        assert visible and any(uuid in visible for uuid, in ledger.conn.execute(
            "SELECT uuid FROM component_usages WHERE missing_usage_policy = 'zero'"))


def test_the_work_of_a_callers_first_page_does_not_grow_with_the_records_they_see(ledger):
    """Sorting every visible record for each page took seconds for a provider with a million."""
    scopes = ledger_caller(ledger, "provider-owner").visible_scopes()
    assert_first_page_work_stays_flat(ledger.conn, lambda: usage_view.records(ledger.conn, scopes, {}, [], 10),
                                      lambda count, start: add_records(ledger, count, start))


def plain_count(conn, scopes, filters):
    clause, params = usage_view.where(conn, scopes, filters)
    return conn.execute(f"SELECT COUNT(*) FROM component_usages u WHERE {clause}", params).fetchone()[0]


@pytest.mark.parametrize("user", ["provider-owner", "provider-manager", "offering-manager", "consumer-owner",
                                  "project-member", "other-owner"])
def test_an_offering_filter_counts_and_lists_what_every_visible_record_gives(ledger, many, user):
    scopes = ledger_caller(ledger, user).visible_scopes()
    for filters in ({"offering_uuid": OFFERING}, {"offering_uuid": OFFERING, "type": "cpu"},
                    {"offering_uuid": OTHER_OFFERING}):
        assert usage_view.count(ledger.conn, scopes, filters) == plain_count(ledger.conn, scopes, filters)
        page = [row["uuid"] for row in usage_view.records(ledger.conn, scopes, filters, [], 10, 3)]
        assert page == plain_page(ledger.conn, scopes, filters, 10, 3)


def test_counting_a_providers_offering_reads_no_more_than_for_staff(ledger):
    """The offering's index answers alone: the provider sees all of the offering's records."""
    add_records(ledger, 2000)

    def count_work(user) -> int:
        scopes = ledger_caller(ledger, user).visible_scopes() if user != "staff" else None
        counted = []
        work = sqlite_work(ledger.conn, lambda: counted.append(
            usage_view.count(ledger.conn, scopes, {"offering_uuid": OFFERING, "type": "cpu"})))
        assert counted == [1000]
        return work

    assert count_work("provider-owner") < 1.2 * count_work("staff")
