"""The whole API fuzzed with schemathesis against its own OpenAPI document: no 5xx, responses as documented.

Only the response checks run. Schemathesis's checks of which *requests* must be accepted or
refused do not apply: the document describes the shapes of fields, while the API is
deliberately as lenient or as strict as Waldur in ways a schema cannot say (a bad
`page_size` falls back to 10; a report needs `resource` or `plan_period`).
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import checks

from api.openapi import build_spec

from .conftest import ON_BOTH_BACKENDS, auth
from .world import RESOURCE

OPERATIONS = [(path, method) for path, operations in build_spec()["paths"].items() for method in operations]
CI = bool(os.environ.get("CI"))  # CI replays the same examples every run; elsewhere each run explores anew
RESPONSE_CHECKS = [
    checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
    checks.response_headers_conformance, checks.response_schema_conformance,
]


@pytest.fixture
def known_uuids(client):
    """Usage and user usage records to aim generated requests at, besides the random UUIDs they carry."""
    headers = auth("staff")
    client.post("/api/marketplace-component-usages/set_usage/", headers=headers, json={
        "resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5", "missing_usage_policy": "reuse"},
                                         {"type": "storage", "amount": "-1.5", "description": "fuzz"}],
    })
    records = client.get("/api/marketplace-component-usages/", headers=headers).get_json()
    client.post(f"/api/marketplace-component-usages/{records[0]['uuid']}/set_user_usage/", headers=headers,
                json={"username": "alice", "usage": "2"})
    user_records = client.get("/api/marketplace-component-user-usages/", headers=headers).get_json()
    return [record["uuid"] for record in records + user_records]


@ON_BOTH_BACKENDS
@pytest.mark.parametrize("path, method", OPERATIONS)
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_api_answers_generated_requests_as_documented(app, known_uuids, path, method, mode):
    operation = schemathesis.openapi.from_wsgi("/api/schema/", app)[path][method.upper()]

    @given(case=operation.as_strategy(generation_mode=mode), aim=st.sampled_from([None, *known_uuids]))
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=CI)
    def answered_as_documented(case, aim):
        if aim and "uuid" in (case.path_parameters or {}):
            case.path_parameters["uuid"] = aim
        if aim and isinstance(case.body, dict) and "resource" in case.body:
            case.body["resource"] = RESOURCE
            case.body.pop("plan_period", None)
            items = case.body.get("usages")
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and "type" in item:
                    item["type"] = "cpu"
        case.call_and_validate(headers=auth("staff"), checks=RESPONSE_CHECKS)

    answered_as_documented()
