"""Site agent registrations: events that an unchanged re-registration does not repeat, and bad input
answered with Waldur-shaped 400s that write nothing."""

import json

import pytest

from ledger.cli import load_catalog
from ledger.commands import site_agents
from ledger.commands.usage import PermissionDenied
from ledger.rules.access import Caller

from .conftest import auth
from .world import OFFERING, OTHER_OFFERING, PROVIDER

WHEN = "2026-03-15T12:00:00.000000Z"
IDENTITIES = "/api/marketplace-site-agent-identities/"
IDENTITY = {"offering": OFFERING, "name": "agent-1", "version": "1.0.7",
            "dependencies": [{"package": "waldur-api-client", "version": "8.1.2"}],
            "last_restarted": "2026-03-15T11:00:00Z"}


def create(client, body=IDENTITY, user="provider-owner"):
    return client.post(IDENTITIES, json=body, headers=auth(user))


def register_service(client, identity_uuid, body, user="provider-owner"):
    return client.post(f"{IDENTITIES}{identity_uuid}/register_service/", json=body, headers=auth(user))


def test_a_registration_is_an_event_and_the_same_registration_again_appends_nothing(client, ledger):
    before = ledger.store.count()
    identity = create(client).get_json()
    assert ledger.store.count() == before + 1
    again = {**IDENTITY, "last_restarted": "2026-03-15T11:30:00Z"}  # said anew on every cycle
    assert client.put(f"{IDENTITIES}{identity['uuid']}/", json=again, headers=auth("provider-owner")).status_code == 200
    assert ledger.store.count() == before + 1
    changed = {**IDENTITY, "version": "1.0.8"}
    assert client.put(f"{IDENTITIES}{identity['uuid']}/", json=changed, headers=auth("provider-owner")).status_code == 200
    assert ledger.store.count() == before + 2


def test_a_service_and_a_processor_registered_again_append_nothing(client, ledger):
    identity = create(client).get_json()
    first = register_service(client, identity["uuid"], {"name": "report", "mode": "report"})
    assert first.status_code == 201
    processor_url = f"/api/marketplace-site-agent-services/{first.get_json()['uuid']}/register_processor/"
    processor = {"name": "OfferingReportProcessor", "backend_type": "slurm", "backend_version": "23.11"}
    assert client.post(processor_url, json=processor, headers=auth("provider-owner")).status_code == 201
    before = ledger.store.count()
    assert register_service(client, identity["uuid"], {"name": "report", "mode": "report"}).status_code == 200
    assert client.post(processor_url, json=processor, headers=auth("provider-owner")).status_code == 200
    assert ledger.store.count() == before
    assert register_service(client, identity["uuid"], {"name": "report", "mode": "event_process"}).status_code == 200
    assert ledger.store.count() == before + 1


@pytest.mark.parametrize("body, errors", [
    ({}, {"offering": ["This field is required."], "name": ["This field is required."]}),
    ({"offering": "nope", "name": "a"}, {"offering": ["Must be a valid UUID."]}),
    ({"offering": OFFERING, "name": "  "}, {"name": ["This field may not be blank."]}),
    ({"offering": OFFERING, "name": "a", "dependencies": "x"}, {"dependencies": ['Expected a list of items but got type "str".']}),
    ({"offering": OFFERING, "name": "a", "dependencies": [{"package": "x"}]},
     {"dependencies": [{"version": ["This field is required."]}]}),
    ({"offering": OFFERING, "name": "a", "last_restarted": "yesterday"},
     {"last_restarted": ["Datetime has wrong format. Use one of these formats instead: "
                         "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."]}),
    ({"offering": "0c0000000000000000000000000000ff", "name": "a"},
     {"offering": ["Object with uuid=0c0000000000000000000000000000ff does not exist."]}),
    ([], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
])
def test_bad_identities_are_400s_that_write_nothing(client, ledger, body, errors):
    before = ledger.store.count()
    response = create(client, body)
    assert (response.status_code, response.get_json()) == (400, errors)
    assert ledger.store.count() == before


@pytest.mark.parametrize("user", ("consumer-owner", "stranger"))
def test_an_offering_the_caller_cannot_see_is_refused_as_unknown(client, ledger, user):
    before = ledger.store.count()
    response = create(client, user=user)
    assert (response.status_code, response.get_json()) == (400, {"offering": [f"Object with uuid={OFFERING} does not exist."]})
    assert ledger.store.count() == before


def test_bad_services_and_processors_are_400s_that_write_nothing(client, ledger):
    identity = create(client).get_json()
    service = register_service(client, identity["uuid"], {"name": "report"}).get_json()
    before = ledger.store.count()
    response = register_service(client, identity["uuid"], {"mode": "report"})
    assert (response.status_code, response.get_json()) == (400, {"name": ["This field is required."]})
    response = client.post(f"/api/marketplace-site-agent-services/{service['uuid']}/register_processor/",
                           json={"name": "p", "backend_version": 5}, headers=auth("provider-owner"))
    assert (response.status_code, response.get_json()) == (400, {"backend_type": ["This field is required."]})
    response = register_service(client, "0" * 32, {"name": "report"})
    assert (response.status_code, response.get_json()) == (404, {"detail": "Not found."})
    assert ledger.store.count() == before


def test_registrations_of_another_offering_are_hidden_and_readers_may_not_register(client):
    identity = create(client, {**IDENTITY, "offering": OTHER_OFFERING}, user="staff").get_json()
    assert register_service(client, identity["uuid"], {"name": "report"}, user="offering-manager").status_code == 404
    assert register_service(client, identity["uuid"], {"name": "report"}, user="provider-manager").status_code == 403


def test_deciding_a_registration_needs_a_writer_of_the_offering_and_a_change():
    offering = {"uuid": OFFERING, "provider_uuid": PROVIDER}
    data = {"uuid": "a" * 32, "identity_uuid": "b" * 32, "name": "report", "mode": "report"}
    owner = Caller(id=3, username="provider-owner", customers_owned=frozenset({PROVIDER}))
    fresh = site_agents.Registration(offering, None, 0)
    (event,) = site_agents.decide_registration(fresh, owner, "agent-service/x", "AgentServiceRegistered", data, WHEN)
    assert (event.version, event.data, event.actor_id, event.occurred_at) == (1, data, 3, WHEN)
    held = site_agents.Registration(offering, data, 1)
    assert site_agents.decide_registration(held, owner, "agent-service/x", "AgentServiceRegistered", data, WHEN) == []
    manager = Caller(id=4, username="provider-manager", customers_managed=frozenset({PROVIDER}))
    with pytest.raises(PermissionDenied):
        site_agents.decide_registration(fresh, manager, "agent-service/x", "AgentServiceRegistered", data, WHEN)


def test_moving_an_identity_needs_a_writer_of_both_offerings(client, ledger):
    identity = create(client, {**IDENTITY, "offering": OTHER_OFFERING}, user="staff").get_json()
    # The provider's manager reads both offerings; made a manager of OFFERING, they write that one only.
    grant = {"username": "provider-manager", "scope": "offering", "scope_uuid": OFFERING, "role": "manager"}
    load_catalog(ledger, json.dumps({"roles": [grant]}))
    moved = {**IDENTITY, "offering": OFFERING}
    before = ledger.store.count()
    response = client.put(f"{IDENTITIES}{identity['uuid']}/", json=moved, headers=auth("provider-manager"))
    assert response.status_code == 403
    assert client.put(f"{IDENTITIES}{identity['uuid']}/", json=moved, headers=auth("provider-owner")).status_code == 200
    assert ledger.store.count() == before + 1
