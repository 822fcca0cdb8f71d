"""The OpenAPI document at /api/schema/ documents every operation for people and tools alike."""

from api.openapi import build_spec

DOCUMENT = build_spec()
OPERATIONS = [(path, method, operation) for path, operations in DOCUMENT["paths"].items()
              for method, operation in operations.items()]
# The usage reports take an Idempotency-Key; the site agent's registrations are idempotent by themselves.
WRITES = [(path, operation) for path, method, operation in OPERATIONS
          if method == "post" and path.startswith("/api/marketplace-component-usages/")]


def test_every_operation_has_a_summary_and_a_description():
    for path, method, operation in OPERATIONS:
        assert operation.get("summary") and operation.get("description"), f"{method.upper()} {path}"


def test_every_get_has_its_head_with_the_same_headers_and_no_body():
    gets = {path: operations["get"] for path, operations in DOCUMENT["paths"].items() if "get" in operations}
    assert gets
    for path, get in gets.items():
        head = DOCUMENT["paths"][path]["head"]
        assert set(head["responses"]) == set(get["responses"])
        assert all("content" not in response for response in head["responses"].values())
        assert head["responses"]["200"].get("headers") == get["responses"]["200"].get("headers")


def test_every_write_takes_an_idempotency_key_and_documents_its_422():
    assert len(WRITES) == 3
    for path, operation in WRITES:
        assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"], path
        assert "422" in operation["responses"], path


def test_the_token_may_be_sent_as_a_header_or_the_x_auth_token_query_parameter():
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["TokenAuth"] == {**schemes["TokenAuth"], "in": "header", "name": "Authorization"}
    assert schemes["TokenQuery"] == {**schemes["TokenQuery"], "in": "query", "name": "x-auth-token"}
    assert DOCUMENT["security"] == [{"TokenAuth": []}, {"TokenQuery": []}]


def test_a_retry_with_a_documented_idempotency_key_reused_for_another_body_is_the_documented_422(client):
    headers = {"Authorization": "Token staff-token", "Idempotency-Key": "retry-1"}
    path = "/api/marketplace-component-usages/set_usage/"
    body = {"resource": "0d000000000000000000000000000001", "usages": [{"type": "cpu", "amount": "1"}]}
    assert client.post(path, json=body, headers=headers).status_code == 201
    body["usages"][0]["amount"] = "2"
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 422 and "422" in DOCUMENT["paths"][path]["post"]["responses"]


def test_the_usage_totals_endpoint_is_documented():
    operation = DOCUMENT["paths"]["/api/usage-totals/"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"period", "by"}
    assert set(DOCUMENT["components"]["schemas"]["UsageTotal"]["properties"]) == {
        "period", "type", "measured_unit", "usage", "records",
    }
