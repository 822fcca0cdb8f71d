"""POST /api/marketplace-component-usages/set_usage/: every check of a report, in order."""

import pytest

from .conftest import ON_BOTH_BACKENDS, auth
from .world import (
    ERRED_RESOURCE, NON_READERS, OTHER_PLAN_PERIOD, OTHER_PROJECT, OTHER_RESOURCE, PLAN_PERIOD, PLANLESS_RESOURCE, READERS, RESOURCE,
    USERS, WRITERS,
)

URL = "/api/marketplace-component-usages/set_usage/"
LIST = "/api/marketplace-component-usages/"


def post(client, body, user="staff", **kwargs):
    return client.post(URL, json=body, headers=auth(user), **kwargs)


def event_count(ledger):
    return ledger.store.count()


def records(client, **params):
    return client.get(LIST, query_string=params, headers=auth("staff")).get_json()


def test_report_answers_201_with_empty_body(client):
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]})
    assert response.status_code == 201
    assert response.data == b""


def test_report_replaces_the_previous_value(client):
    post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]})
    post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "7.25", "description": "fixed"}]})
    (record,) = records(client, type="cpu")
    assert record["usage"] == "7.25" and record["description"] == "fixed"


def test_duplicate_types_in_one_request_apply_in_order(client, ledger):
    before = event_count(ledger)
    post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1"}, {"type": "cpu", "amount": "2"}]})
    assert event_count(ledger) == before + 2
    (record,) = records(client, type="cpu")
    assert record["usage"] == "2.00"


@ON_BOTH_BACKENDS
def test_empty_usages_list_records_nothing(client, ledger):
    before = event_count(ledger)
    assert post(client, {"resource": RESOURCE, "usages": []}).status_code == 201
    assert event_count(ledger) == before


def test_hyphenated_resource_uuid_is_accepted(client):
    hyphenated = f"{RESOURCE[:8]}-{RESOURCE[8:12]}-{RESOURCE[12:16]}-{RESOURCE[16:20]}-{RESOURCE[20:]}"
    assert post(client, {"resource": hyphenated, "usages": [{"type": "cpu", "amount": 1}]}).status_code == 201


def test_negative_amounts_are_allowed(client):
    assert post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "-3.5"}]}).status_code == 201
    assert records(client)[0]["usage"] == "-3.50"


@pytest.mark.parametrize(
    "amount, message",
    [
        ("1.230", "Ensure that there are no more than 2 decimal places."),
        ("abc", "A valid number is required."),
        ("NaN", "A valid number is required."),
        ("Infinity", "A valid number is required."),
        (True, "A valid number is required."),
        (None, "This field may not be null."),
        ("1" * 19, "Ensure that there are no more than 18 digits before the decimal point."),
        ("1" * 19 + ".11", "Ensure that there are no more than 20 digits in total."),
    ],
)
def test_amount_checks(client, ledger, amount, message):
    before = event_count(ledger)
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "1"}, {"type": "ram", "amount": amount}]})
    assert response.status_code == 400
    assert response.get_json() == {"usages": [{}, {"amount": [message]}]}
    assert event_count(ledger) == before


def test_field_errors_are_collected_into_one_body(client):
    response = post(client, {"resource": "nope", "date": "yesterday", "usages": [{"amount": "1"}, {"type": " ", "amount": 1, "missing_usage_policy": "always"}]})
    assert response.status_code == 400
    assert response.get_json() == {
        "resource": ["Must be a valid UUID."],
        "date": ["Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."],
        "usages": [
            {"type": ["This field is required."]},
            {"type": ["This field may not be blank."], "missing_usage_policy": ['"always" is not a valid choice.']},
        ],
    }


def test_usages_is_required_and_must_be_a_list(client):
    assert post(client, {"resource": RESOURCE}).get_json() == {"usages": ["This field is required."]}
    assert post(client, {"resource": RESOURCE, "usages": "cpu"}).get_json() == {
        "usages": ['Expected a list of items but got type "str".']
    }


def test_body_must_be_an_object(client):
    response = post(client, [1, 2])
    assert response.status_code == 400
    assert response.get_json() == {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}


def test_malformed_json_is_a_400_and_writes_nothing(client, ledger):
    before = event_count(ledger)
    response = client.post(URL, data=b'{"usages": [', headers={**auth("staff"), "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["detail"].startswith("JSON parse error")
    assert event_count(ledger) == before


def test_non_utf8_body_is_a_400(client):
    response = client.post(URL, data=b'{"usages": "\xff\xfe"}', headers={**auth("staff"), "Content-Type": "application/json"})
    assert response.status_code == 400


def test_description_and_type_lengths_are_limited(client):
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "c" * 51, "amount": 1, "description": "d" * 2001}]})
    assert response.get_json() == {"usages": [{
        "type": ["Ensure this field has no more than 50 characters."],
        "description": ["Ensure this field has no more than 2000 characters."],
    }]}


@ON_BOTH_BACKENDS
def test_unknown_resource_and_plan_period(client):
    missing = "f" * 32
    response = post(client, {"resource": missing, "plan_period": missing, "usages": []})
    assert response.status_code == 400
    assert response.get_json() == {
        "plan_period": [f"Object with uuid={missing} does not exist."],
        "resource": [f"Object with uuid={missing} does not exist."],
    }


def test_either_plan_period_or_resource_is_required(client):
    response = post(client, {"usages": [{"type": "cpu", "amount": 1}]})
    assert response.get_json() == {"non_field_errors": ["Either plan_period or resource should be provided."]}


def test_plan_period_wins_over_resource(client):
    body = {"plan_period": PLAN_PERIOD, "resource": OTHER_RESOURCE, "usages": [{"type": "license", "amount": 1}]}
    assert post(client, body).status_code == 201
    (record,) = records(client)
    assert record["resource_uuid"] == RESOURCE


def test_closed_plan_period_is_refused(client, catalog, ledger):
    from ledger.cli import load_catalog
    import json

    catalog["resources"][0]["plan_periods"] = [
        {"uuid": PLAN_PERIOD, "start": "2025-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"},
    ]
    load_catalog(ledger, json.dumps(catalog))
    response = post(client, {"plan_period": PLAN_PERIOD, "usages": [{"type": "cpu", "amount": 1}]})
    assert response.get_json() == {"plan_period": ["Billing period is closed."]}


def test_a_report_is_checked_against_the_catalog_as_it_now_stands(client, catalog, ledger):
    """What a report's resource is, is kept between reports only until the catalog changes."""
    from ledger.cli import load_catalog
    import json

    assert post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 1}]}).status_code == 201
    assert post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 1}]}, user="consumer-owner").status_code == 403
    catalog["resources"][0]["state"] = "Erred"
    load_catalog(ledger, json.dumps(catalog))
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 2}]})
    assert response.get_json() == {"resource": ["Resource is not in valid state."]}
    catalog["resources"][0]["state"] = "OK"
    catalog["resources"][0]["project_uuid"] = OTHER_PROJECT  # another client's now: its owner may not read it
    load_catalog(ledger, json.dumps(catalog))
    assert post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 3}]}).status_code == 201
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 4}]}, user="consumer-owner")
    assert response.get_json() == {"resource": [f"Object with uuid={RESOURCE} does not exist."]}


def test_resource_in_wrong_state_is_refused(client):
    response = post(client, {"resource": ERRED_RESOURCE, "usages": [{"type": "cpu", "amount": 1}]})
    assert response.get_json() == {"resource": ["Resource is not in valid state."]}


def test_resource_without_plan_is_refused(client):
    response = post(client, {"resource": PLANLESS_RESOURCE, "usages": [{"type": "cpu", "amount": 1}]})
    assert response.status_code == 400
    assert response.get_json() == {"non_field_errors": ["Resource must have a plan to report usage"]}


def test_invalid_components_are_listed_sorted_and_unique(client, ledger):
    before = event_count(ledger)
    body = {"resource": RESOURCE, "usages": [
        {"type": "zeta", "amount": 1}, {"type": "cpu", "amount": 1}, {"type": "nodes", "amount": 1},
        {"type": "zeta", "amount": 2},
    ]}
    response = post(client, body)
    assert response.get_json() == {"non_field_errors": ["These components are invalid: nodes, zeta."]}
    assert event_count(ledger) == before


def test_future_date_is_refused(client):
    body = {"resource": RESOURCE, "date": "2026-03-20T00:00:00Z", "usages": [{"type": "cpu", "amount": 1}]}
    assert post(client, body).get_json() == {"date": ["Cannot submit usage for future dates"]}


def test_only_staff_and_providers_may_backfill(client):
    body = {"resource": RESOURCE, "date": "2026-03-01T00:00:00Z", "usages": [{"type": "cpu", "amount": 1}]}
    response = post(client, body, user="project-admin")
    assert response.status_code == 400
    assert response.get_json() == {
        "non_field_errors": ["Only staff users and service providers can specify date for backfilling"]
    }


def test_provider_may_backfill_only_limit_components_into_past_periods(client):
    past = {"resource": RESOURCE, "date": "2026-02-10T00:00:00Z"}
    response = post(client, {**past, "usages": [{"type": "cpu", "amount": 1}]}, user="provider-owner")
    assert response.get_json() == {"non_field_errors": [
        "Service providers can only specify date for limit-based or prepaid billing components"
        " when backfilling past billing periods"
    ]}
    assert post(client, {**past, "usages": [{"type": "storage", "amount": 1}]}, user="provider-owner").status_code == 201
    assert post(client, {**past, "usages": [{"type": "cpu", "amount": 1}]}, user="staff").status_code == 201
    this_month = {"resource": RESOURCE, "date": "2026-03-02T00:00:00Z", "usages": [{"type": "cpu", "amount": 1}]}
    assert post(client, this_month, user="provider-owner").status_code == 201


def test_backfill_lands_in_the_period_of_its_date(client):
    post(client, {"resource": RESOURCE, "date": "2026-01-31T23:59:59Z", "usages": [{"type": "cpu", "amount": 9}]})
    (record,) = records(client)
    assert record["billing_period"] == "2026-01-01"
    assert record["date"] == "2026-01-31T23:59:59Z"


@pytest.mark.parametrize("user", sorted(USERS))
def test_write_permission_by_role(client, ledger, user):
    before = event_count(ledger)
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 1}]}, user=user)
    if user in WRITERS:
        assert response.status_code == 201
        return
    if user in NON_READERS:  # told nothing of a resource they may not read
        assert response.status_code == 400
        assert response.get_json() == {"resource": [f"Object with uuid={RESOURCE} does not exist."]}
    else:
        assert response.status_code == 403
        assert response.get_json() == {"detail": "You do not have permission to perform this action."}
    assert event_count(ledger) == before


def test_validation_comes_before_permission(client):
    response = post(client, {"resource": RESOURCE, "usages": [{"type": "nodes", "amount": 1}]}, user="project-member")
    assert response.status_code == 400


def test_missing_and_invalid_tokens_are_401(client):
    response = client.post(URL, json={"usages": []})
    assert response.status_code == 401
    assert response.get_json() == {"detail": "Authentication credentials were not provided."}
    assert response.headers["WWW-Authenticate"] == "Token"
    response = client.post(URL, json={"usages": []}, headers={"Authorization": "Token wrong"})
    assert response.status_code == 401 and response.get_json() == {"detail": "Invalid token."}


def test_token_keyword_is_case_insensitive_and_query_token_works(client):
    body = {"resource": RESOURCE, "usages": []}
    assert client.post(URL, json=body, headers={"Authorization": "token staff-token"}).status_code == 201
    assert client.post(URL + "?x-auth-token=staff-token", json=body).status_code == 201


def test_recurring_maps_to_reuse_and_explicit_policy_wins(client):
    post(client, {"resource": RESOURCE, "usages": [
        {"type": "cpu", "amount": 1, "recurring": True},
        {"type": "ram", "amount": 1, "recurring": True, "missing_usage_policy": "zero"},
    ]})
    policies = {r["type"]: (r["missing_usage_policy"], r["recurring"]) for r in records(client)}
    assert policies == {"cpu": ("reuse", True), "ram": ("zero", False)}


def test_other_methods_are_405(client):
    response = client.get(URL, headers=auth("staff"))
    assert response.status_code == 405
    assert response.get_json() == {"detail": 'Method "GET" not allowed.'}


def test_report_for_a_resource_of_another_offering_checks_that_offering(client):
    body = {"plan_period": OTHER_PLAN_PERIOD, "usages": [{"type": "ram", "amount": 1}]}
    assert post(client, body).get_json() == {"non_field_errors": ["These components are invalid: ram."]}


def test_reader_roles_see_the_report(client):
    post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": 1}]})
    for user in READERS:
        assert len(client.get(LIST, headers=auth(user)).get_json()) == 1, user


def test_an_unchanged_report_appends_nothing_and_still_answers_201(client, ledger):
    body = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5", "description": "jobs"}]}
    assert post(client, body).status_code == 201
    before = event_count(ledger)
    keyed = {**auth("staff"), "Idempotency-Key": "cycle-2"}
    assert client.post(URL, json=body, headers=keyed).status_code == 201
    assert event_count(ledger) == before
    other = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "6"}]}
    assert client.post(URL, json=other, headers=keyed).status_code == 422  # the key was remembered
    changed = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5", "description": "jobs",
                                                 "missing_usage_policy": "reuse"}]}
    assert post(client, changed).status_code == 201
    assert event_count(ledger) == before + 1


def test_duplicate_types_back_to_the_held_value_are_both_recorded(client, ledger):
    assert post(client, {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5"}]}).status_code == 201
    before = event_count(ledger)
    twice = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "6"}, {"type": "cpu", "amount": "5"}]}
    assert post(client, twice).status_code == 201
    assert event_count(ledger) == before + 2
    (record,) = records(client)
    assert record["usage"] == "5.00"


def test_repeated_items_of_a_new_value_are_each_recorded(client, ledger):
    before = event_count(ledger)
    twice = {"resource": RESOURCE, "usages": [{"type": "cpu", "amount": "7"}, {"type": "cpu", "amount": "7"}]}
    assert post(client, twice).status_code == 201
    assert event_count(ledger) == before + 2
    assert post(client, twice).status_code == 201
    assert event_count(ledger) == before + 2
