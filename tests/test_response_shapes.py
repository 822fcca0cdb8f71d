"""Every response the API sends has exactly the keys its operation's OpenAPI schema declares: a key
sent but not declared, or declared but never sent, fails here for each response shape."""

import pytest

from api.openapi import RESPONSE_SHAPES, build_spec

from .conftest import auth
from .world import OFFERING, RESOURCE

DOCUMENT = build_spec()
COMPONENTS = DOCUMENT["components"]["schemas"]
IDENTITIES = "/api/marketplace-site-agent-identities/"


@pytest.fixture
def catalog(catalog):
    """The test catalog with an offering user who is a user of the catalog too, shown with its user keys."""
    catalog["offering_users"].append({"uuid": "0f000000000000000000000000000002", "offering_uuid": OFFERING,
                                      "username": "bob", "user_id": catalog["users"][0]["id"]})
    return catalog


def resolved(schema: dict) -> tuple[str | None, dict]:
    """A schema with its `$ref` followed, and the component's name when it was one."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return name, COMPONENTS[name]
    return None, schema


def walk(value, schema: dict, where: str, seen: dict[str, set], undeclared: list[str]) -> None:
    """Notes the keys of every object in `value` under its shape's name in `seen`, and each key its schema
    does not declare in `undeclared`."""
    name, schema = resolved(schema)
    where = name or where
    if schema.get("type") == "array":
        for item in value:
            walk(item, schema["items"], f"{where}[]", seen, undeclared)
    elif schema.get("type") == "object" and "properties" in schema:
        properties = schema["properties"]
        seen.setdefault(where, set()).update(value)
        if schema.get("additionalProperties") is False:
            undeclared += [f"{where}.{key}" for key in value if key not in properties]
        for key, item in value.items():
            if key in properties:
                walk(item, properties[key], f"{where}.{key}", seen, undeclared)


def declared(schema: dict, where: str, found: dict[str, set]) -> None:
    """Notes the keys each object shape of `schema` declares, named as walk() names them."""
    name, schema = resolved(schema)
    where = name or where
    if schema.get("type") == "array":
        declared(schema["items"], f"{where}[]", found)
    elif schema.get("type") == "object" and "properties" in schema:
        found[where] = set(schema["properties"])
        for key, item in schema["properties"].items():
            declared(item, f"{where}.{key}", found)


def documented_schema(path: str, method: str, status: int) -> dict:
    operation = DOCUMENT["paths"][path][method]
    return operation["responses"][str(status)]["content"]["application/json"]["schema"]


@pytest.fixture
def answers(client) -> list[tuple[str, str, object]]:
    """(documented path, method, response) of every operation that answers a body, on a ledger with one of
    everything: usage records, a user's share, a site agent with a service and a processor."""
    staff = auth("staff")
    client.post("/api/marketplace-component-usages/set_usage/", headers=staff, json={
        "resource": RESOURCE, "usages": [{"type": "cpu", "amount": "5", "missing_usage_policy": "reuse"}],
    })
    record = client.get("/api/marketplace-component-usages/", headers=staff).get_json()[0]["uuid"]
    for username, user in (("alice", None), ("bob", "/api/marketplace-offering-users/0f000000000000000000000000000002/")):
        client.post(f"/api/marketplace-component-usages/{record}/set_user_usage/", headers=staff,
                    json={"username": username, "usage": "2", **({"user": user} if user else {})})
    answered = []
    identity_body = {"offering": OFFERING, "name": "agent", "dependencies": [{"package": "p", "version": "1"}]}
    identity = client.post(IDENTITIES, headers=staff, json=identity_body)
    answered.append((IDENTITIES, "post", identity))
    answered.append((f"{IDENTITIES}{{uuid}}/", "put",
                     client.put(f"{IDENTITIES}{identity.get_json()['uuid']}/", headers=staff, json=identity_body)))
    service = client.post(f"{IDENTITIES}{identity.get_json()['uuid']}/register_service/", headers=staff,
                          json={"name": "report"})
    answered.append((f"{IDENTITIES}{{uuid}}/register_service/", "post", service))
    processor = client.post(f"/api/marketplace-site-agent-services/{service.get_json()['uuid']}/register_processor/",
                            headers=staff, json={"name": "p", "backend_type": "slurm"})
    answered.append(("/api/marketplace-site-agent-services/{uuid}/register_processor/", "post", processor))
    known = {"/api/marketplace-site-agent-services/": service.get_json()["uuid"],
             "/api/marketplace-site-agent-processors/": processor.get_json()["uuid"]}
    gets = sorted(path for path, operations in DOCUMENT["paths"].items() if "get" in operations)
    for path in gets:  # a list comes before its records, whose UUIDs it gives
        parent = path.split("{uuid}")[0]
        if "{uuid}" not in path:
            response = client.get(path, headers=staff)
            body = response.get_json()
            if isinstance(body, list) and body and "uuid" in body[0]:
                known[path] = body[0]["uuid"]
        else:
            response = client.get(path.replace("{uuid}", known[parent]), headers=staff)
        answered.append((path, "get", response))
    return answered


def test_every_response_has_only_the_keys_its_schema_declares(answers):
    undeclared = []
    for path, method, response in answers:
        assert response.status_code in (200, 201), (method, path, response.get_json())
        walk(response.get_json(), documented_schema(path, method, response.status_code), path, {}, undeclared)
    assert undeclared == []


def test_every_key_a_schema_declares_is_sent(answers):
    seen, expected = {}, {}
    for path, method, response in answers:
        schema = documented_schema(path, method, response.status_code)
        walk(response.get_json(), schema, path, seen, [])
        declared(schema, path, expected)
    assert {name: keys - seen.get(name, set()) for name, keys in expected.items() if keys - seen.get(name, set())} == {}


def test_every_response_shape_is_answered_by_some_operation(answers):
    seen = {}
    for path, method, response in answers:
        walk(response.get_json(), documented_schema(path, method, response.status_code), path, seen, [])
    assert set(RESPONSE_SHAPES) <= set(seen)
