"""The test world: a catalog with a provider, two client organisations and a user of every role."""
PROVIDER = "0a000000000000000000000000000001"
CLIENT = "0a000000000000000000000000000002"
OTHER_CLIENT = "0a000000000000000000000000000003"
PROJECT = "0b000000000000000000000000000001"
OTHER_PROJECT = "0b000000000000000000000000000002"
OFFERING = "0c000000000000000000000000000001"
OTHER_OFFERING = "0c000000000000000000000000000002"
RESOURCE = "0d000000000000000000000000000001"
OTHER_RESOURCE = "0d000000000000000000000000000002"
ERRED_RESOURCE = "0d000000000000000000000000000003"
PLANLESS_RESOURCE = "0d000000000000000000000000000004"
PLAN_PERIOD = "0e000000000000000000000000000001"
OTHER_PLAN_PERIOD = "0e000000000000000000000000000002"
ERRED_PLAN_PERIOD = "0e000000000000000000000000000003"
OFFERING_USER = "0f000000000000000000000000000001"

# username -> (roles as (scope, scope uuid, role)); every user's token is "<username>-token".
USERS = {
    "staff": [],
    "support": [],
    "provider-owner": [("customer", PROVIDER, "owner")],
    "provider-manager": [("customer", PROVIDER, "manager")],
    "offering-manager": [("offering", OFFERING, "manager")],
    "consumer-owner": [("customer", CLIENT, "owner")],
    "consumer-manager": [("customer", CLIENT, "manager")],
    "project-admin": [("project", PROJECT, "admin")],
    "project-manager": [("project", PROJECT, "manager")],
    "project-member": [("project", PROJECT, "member")],
    "other-owner": [("customer", OTHER_CLIENT, "owner")],
    "stranger": [],
}
WRITERS = ("staff", "provider-owner", "offering-manager")
READERS = ("staff", "support", "provider-owner", "provider-manager", "offering-manager",
           "consumer-owner", "project-admin", "project-manager", "project-member")
NON_READERS = ("consumer-manager", "other-owner", "stranger")

COMPONENTS = [
    {"type": "cpu", "name": "CPU hours", "measured_unit": "h", "billing_type": "usage"},
    {"type": "ram", "name": "RAM", "measured_unit": "GB", "billing_type": "usage"},
    {"type": "storage", "name": "Storage", "measured_unit": "GB", "billing_type": "limit",
     "limit_period": "month", "limit_amount": 1000},
    {"type": "license", "name": "License", "measured_unit": "seat", "billing_type": "one"},
    {"type": "nodes", "name": "Nodes", "measured_unit": "node", "billing_type": "fixed"},
]


def token(username: str) -> str:
    return f"{username}-token"


def catalog_document() -> dict:
    """A catalog with a provider, two client organisations and a user of every role."""
    plan = lambda uuid: [{"uuid": uuid, "start": "2025-01-01T00:00:00Z", "end": None}]  # noqa: E731
    return {
        "users": [
            {"id": index, "username": name, "token": token(name),
             "is_staff": name == "staff", "is_support": name == "support"}
            for index, name in enumerate(USERS, start=1)
        ],
        "customers": [
            {"uuid": PROVIDER, "name": "Provider Org"},
            {"uuid": CLIENT, "name": "Client Org"},
            {"uuid": OTHER_CLIENT, "name": "Other Org"},
        ],
        "projects": [
            {"uuid": PROJECT, "name": "Climate", "customer_uuid": CLIENT},
            {"uuid": OTHER_PROJECT, "name": "Genomics", "customer_uuid": OTHER_CLIENT},
        ],
        "offerings": [
            {"uuid": OFFERING, "name": "HPC", "customer_uuid": PROVIDER, "components": COMPONENTS},
            {"uuid": OTHER_OFFERING, "name": "Cloud", "customer_uuid": PROVIDER,
             "components": [{"type": "cpu", "name": "vCPU", "measured_unit": "h", "billing_type": "usage"}]},
        ],
        "offering_users": [{"uuid": OFFERING_USER, "offering_uuid": OFFERING, "username": "alice", "user_id": None}],
        "resources": [
            {"uuid": RESOURCE, "name": "alloc-01", "offering_uuid": OFFERING, "project_uuid": PROJECT,
             "state": "OK", "plan_periods": plan(PLAN_PERIOD)},
            {"uuid": OTHER_RESOURCE, "name": "alloc-02", "offering_uuid": OTHER_OFFERING,
             "project_uuid": OTHER_PROJECT, "state": "OK", "plan_periods": plan(OTHER_PLAN_PERIOD)},
            {"uuid": ERRED_RESOURCE, "name": "broken", "offering_uuid": OFFERING, "project_uuid": PROJECT,
             "state": "Erred", "plan_periods": plan(ERRED_PLAN_PERIOD)},
            {"uuid": PLANLESS_RESOURCE, "name": "no-plan", "offering_uuid": OFFERING, "project_uuid": PROJECT,
             "state": "OK", "plan_periods": []},
        ],
        "roles": [
            {"username": name, "scope": scope, "scope_uuid": uuid, "role": role}
            for name, roles in USERS.items()
            for scope, uuid, role in roles
        ],
    }
