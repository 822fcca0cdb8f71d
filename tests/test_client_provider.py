"""Wire compatibility of what the site agent reads and registers: the official waldur-api-client 8.1.3
against a live `ledger serve`, for each role."""

import datetime as dt
import json
from uuid import UUID

import httpx
import pytest
from waldur_api_client import AuthenticatedClient
from waldur_api_client.api.marketplace_offering_users import (
    marketplace_offering_users_list as list_offering_users,
)
from waldur_api_client.api.marketplace_offering_users import (
    marketplace_offering_users_retrieve as retrieve_offering_user,
)
from waldur_api_client.api.marketplace_provider_offerings import (
    marketplace_provider_offerings_list as list_offerings,
)
from waldur_api_client.api.marketplace_provider_offerings import (
    marketplace_provider_offerings_retrieve as retrieve_offering,
)
from waldur_api_client.api.marketplace_provider_resources import (
    marketplace_provider_resources_list as list_resources,
)
from waldur_api_client.api.marketplace_provider_resources import (
    marketplace_provider_resources_retrieve as retrieve_resource,
)
from waldur_api_client.api.marketplace_service_providers import marketplace_service_providers_list as list_providers
from waldur_api_client.api.marketplace_site_agent_identities import (
    marketplace_site_agent_identities_create as create_identity,
)
from waldur_api_client.api.marketplace_site_agent_identities import (
    marketplace_site_agent_identities_list as list_identities,
)
from waldur_api_client.api.marketplace_site_agent_identities import (
    marketplace_site_agent_identities_register_service as register_service,
)
from waldur_api_client.api.marketplace_site_agent_identities import (
    marketplace_site_agent_identities_retrieve as retrieve_identity,
)
from waldur_api_client.api.marketplace_site_agent_identities import (
    marketplace_site_agent_identities_update as update_identity,
)
from waldur_api_client.api.marketplace_site_agent_services import (
    marketplace_site_agent_services_register_processor as register_processor,
)
from waldur_api_client.api.users import users_me_retrieve as me
from waldur_api_client.api.version import version_retrieve as version
from waldur_api_client.errors import UnexpectedStatus
from waldur_api_client.models import (
    AgentIdentityRequest,
    AgentProcessorCreateRequest,
    AgentServiceCreateRequest,
    ResourceState,
)
from waldur_api_client.models.agent_dependency_request import AgentDependencyRequest
from waldur_api_client.models.provider_offering_details_field_enum import ProviderOfferingDetailsFieldEnum
from waldur_api_client.models.resource_field_enum import ResourceFieldEnum

from ledger.rules.access import user_uuid

from .conftest import ON_BOTH_BACKENDS
from .world import (
    CLIENT,
    ERRED_RESOURCE,
    NON_READERS,
    OFFERING,
    OFFERING_USER,
    OTHER_OFFERING,
    OTHER_RESOURCE,
    PLANLESS_RESOURCE,
    PROJECT,
    PROVIDER,
    RESOURCE,
    USERS,
    token,
)

pytestmark = ON_BOTH_BACKENDS

PROVIDER_READERS = ("staff", "support", "provider-owner", "provider-manager", "offering-manager")
CONSUMERS = ("consumer-owner", "project-admin", "project-member")


@pytest.fixture
def catalog(catalog):
    """The test catalog, with site names for two resources and alice as an offering user of user 1."""
    resources = {r["uuid"]: r for r in catalog["resources"]}
    resources[RESOURCE]["backend_id"] = "hpc_climate"
    resources[ERRED_RESOURCE]["backend_id"] = "hpc_broken"
    catalog["offering_users"][0]["user_id"] = 1
    return catalog


@pytest.fixture
def connect(live_server):
    clients = []

    def as_user(username: str) -> AuthenticatedClient:
        client = AuthenticatedClient(base_url=live_server, token=token(username))
        clients.append(client)
        return client

    yield as_user
    for client in clients:
        client.get_httpx_client().close()


def test_version_and_the_caller(connect):
    assert version.sync(client=connect("staff")).version
    caller = me.sync(client=connect("provider-owner"))
    assert caller.username == "provider-owner" and caller.uuid == UUID(user_uuid(USERS_ID["provider-owner"]))
    assert caller.is_staff is False and caller.is_support is False
    assert me.sync(client=connect("staff")).is_staff is True


USERS_ID = {name: index for index, name in enumerate(USERS, start=1)}


@pytest.mark.parametrize("user", PROVIDER_READERS)
def test_the_provider_side_reads_its_offering_with_components(connect, user):
    offerings = {o.uuid: o for o in list_offerings.sync(client=connect(user))}
    assert UUID(OFFERING) in offerings
    offering = retrieve_offering.sync(uuid=UUID(OFFERING), client=connect(user))
    assert offering.name == "HPC" and offering.customer_uuid == UUID(PROVIDER)
    assert offering.customer_name == "Provider Org" and offering.partitions == []
    storage = {c.type_: c for c in offering.components}["storage"]
    assert (storage.billing_type, storage.limit_period, storage.limit_amount) == ("limit", "month", 1000)


@pytest.mark.parametrize("user", (*CONSUMERS, *NON_READERS))
def test_others_see_no_offering_and_get_404(connect, user):
    assert list_offerings.sync(client=connect(user)) == []
    with pytest.raises(UnexpectedStatus) as error:
        retrieve_offering.sync(uuid=UUID(OFFERING), client=connect(user))
    assert error.value.status_code == 404


def test_offering_fields_are_sparse(connect):
    fields = [ProviderOfferingDetailsFieldEnum.COMPONENTS, ProviderOfferingDetailsFieldEnum.CUSTOMER_UUID]
    response = retrieve_offering.sync_detailed(uuid=UUID(OFFERING), client=connect("staff"), field=fields)
    assert set(json.loads(response.content)) == {"components", "customer_uuid"}


def test_an_offering_manager_sees_only_their_offering(connect):
    assert [o.uuid for o in list_offerings.sync(client=connect("offering-manager"))] == [UUID(OFFERING)]
    assert len(list_offerings.sync(client=connect("provider-owner"))) == 2


def test_service_providers_by_customer(connect):
    (provider,) = list_providers.sync(client=connect("provider-owner"), customer_uuid=UUID(PROVIDER))
    assert provider.customer_uuid == UUID(PROVIDER) and provider.customer_name == "Provider Org" and provider.uuid
    assert list_providers.sync(client=connect("staff"), customer_uuid=UUID(CLIENT)) == []
    assert list_providers.sync(client=connect("stranger")) == []


def test_provider_resources_with_their_filters(connect):
    staff = connect("staff")
    everything = list_resources.sync_all(client=staff)
    assert {r.uuid for r in everything} == {UUID(u) for u in (RESOURCE, OTHER_RESOURCE, ERRED_RESOURCE, PLANLESS_RESOURCE)}
    of_offering = list_resources.sync_all(client=staff, offering_uuid=[UUID(OFFERING)], state=[ResourceState.OK, ResourceState.ERRED])
    assert {r.uuid for r in of_offering} == {UUID(u) for u in (RESOURCE, ERRED_RESOURCE, PLANLESS_RESOURCE)}
    erred = list_resources.sync_all(client=staff, state=[ResourceState.ERRED])
    assert [r.backend_id for r in erred] == ["hpc_broken"]
    (climate,) = list_resources.sync_all(client=staff, backend_id="hpc_climate")
    assert climate.uuid == UUID(RESOURCE) and climate.project_uuid == UUID(PROJECT) and climate.customer_uuid == UUID(CLIENT)
    assert climate.slug == "alloc-01" and climate.project_slug == "climate" and climate.state == ResourceState.OK
    assert len(list_resources.sync_all(client=staff, project_uuid=UUID(PROJECT))) == 3
    assert len(list_resources.sync_all(client=staff, customer_uuid=UUID(CLIENT))) == 3


def test_provider_resources_are_paged_with_links_and_count(connect):
    response = list_resources.sync_detailed(client=connect("staff"), page_size=3)
    assert response.headers["X-Result-Count"] == "4" and len(response.parsed) == 3
    assert 'rel="next"' in response.headers["Link"]
    second = list_resources.sync_detailed(client=connect("staff"), page_size=3, page=2)
    assert len(second.parsed) == 1
    pages = response.parsed + second.parsed
    assert {r.uuid for r in pages} == {r.uuid for r in list_resources.sync_all(client=connect("staff"))}
    assert [(r.name, r.uuid.hex) for r in pages] == sorted((r.name, r.uuid.hex) for r in pages)
    # Counted with its filters and the caller's scopes, as the page is read.
    of_offering = list_resources.sync_detailed(client=connect("offering-manager"), page_size=1,
                                               offering_uuid=[UUID(OFFERING)], state=[ResourceState.OK])
    assert of_offering.headers["X-Result-Count"] == str(len(list_resources.sync_all(
        client=connect("staff"), offering_uuid=[UUID(OFFERING)], state=[ResourceState.OK])))


def test_provider_resource_fields_and_retrieve(connect):
    fields = [ResourceFieldEnum.UUID, ResourceFieldEnum.BACKEND_ID]
    response = list_resources.sync_detailed(client=connect("staff"), field=fields, backend_id="hpc_climate")
    assert json.loads(response.content) == [{"uuid": RESOURCE, "backend_id": "hpc_climate"}]
    resource = retrieve_resource.sync(uuid=UUID(RESOURCE), client=connect("offering-manager"))
    assert resource.name == "alloc-01" and resource.offering_uuid == UUID(OFFERING)


@pytest.mark.parametrize("user", (*CONSUMERS, *NON_READERS))
def test_provider_resources_are_hidden_from_others(connect, user):
    assert list_resources.sync_all(client=connect(user)) == []
    with pytest.raises(UnexpectedStatus) as error:
        retrieve_resource.sync(uuid=UUID(RESOURCE), client=connect(user))
    assert error.value.status_code == 404


def test_offering_users_and_the_link_of_a_user_usage_resolve(connect, live_server):
    staff = connect("staff")
    (alice,) = list_offering_users.sync_all(client=staff, offering_uuid=[UUID(OFFERING)], is_restricted=False)
    anonymous = httpx.get(f"{live_server}/api/marketplace-offering-users/", params={"is_restricted": "true"})
    assert anonymous.status_code == 401  # the empty list of restricted users is for callers too
    assert alice.username == "alice" and alice.user_uuid == UUID(user_uuid(1)) and alice.offering_uuid == UUID(OFFERING)
    assert alice.url == f"{live_server}/api/marketplace-offering-users/{OFFERING_USER}/"
    assert list_offering_users.sync_all(client=staff, is_restricted=True) == []
    assert list_offering_users.sync_all(client=staff, offering_uuid=[UUID(OTHER_OFFERING)]) == []
    assert retrieve_offering_user.sync(uuid=UUID(OFFERING_USER), client=connect("provider-manager")).username == "alice"
    assert list_offering_users.sync_all(client=connect("stranger")) == []
    with pytest.raises(UnexpectedStatus) as error:
        retrieve_offering_user.sync(uuid=UUID(OFFERING_USER), client=connect("project-admin"))
    assert error.value.status_code == 404


def identity_request(name="agent-1", offering=OFFERING, version="1.0.7") -> AgentIdentityRequest:
    return AgentIdentityRequest(
        offering=UUID(offering), name=name, version=version,
        last_restarted=dt.datetime(2026, 3, 15, 11, 0, tzinfo=dt.timezone.utc),
        dependencies=[AgentDependencyRequest(package="waldur-api-client", version="8.1.2")],
        config_file_path="", config_file_content="",
    )


def test_an_agent_registers_its_identity_service_and_processor(connect, live_server):
    owner = connect("provider-owner")
    identity = create_identity.sync(body=identity_request(), client=owner)
    assert identity.name == "agent-1" and identity.offering == UUID(OFFERING) and identity.services == []
    assert identity.created_by == UUID(user_uuid(USERS_ID["provider-owner"]))
    assert identity.url == f"{live_server}/api/marketplace-site-agent-identities/{identity.uuid.hex}/"
    assert [i.uuid for i in list_identities.sync(client=owner, name="agent-1")] == [identity.uuid]
    assert list_identities.sync(client=owner, name="agent-2") == []
    service = register_service.sync(uuid=identity.uuid.hex, client=owner,
                                     body=AgentServiceCreateRequest(name="report", mode="report"))
    assert (service.identity, service.identity_name, service.state.value) == (identity.uuid, "agent-1", "Active")
    processor = register_processor.sync(uuid=service.uuid.hex, client=owner, body=AgentProcessorCreateRequest(
        name="OfferingReportProcessor", backend_type="slurm", backend_version="23.11"))
    assert (processor.service, processor.service_name, processor.backend_version) == (service.uuid, "report", "23.11")
    again = retrieve_identity.sync(uuid=identity.uuid.hex, client=connect("support"))
    assert [s.uuid for s in again.services] == [service.uuid]
    registered_again = register_service.sync_detailed(uuid=identity.uuid.hex, client=owner,
                                                      body=AgentServiceCreateRequest(name="report", mode="report"))
    assert registered_again.status_code == 200 and registered_again.parsed.uuid == service.uuid
    assert [p.uuid for p in registered_again.parsed.processors] == [processor.uuid]


def test_identities_are_updated_by_put_and_patch(connect):
    owner = connect("offering-manager")
    identity = create_identity.sync(body=identity_request(), client=owner)
    updated = update_identity.sync(uuid=identity.uuid.hex, client=owner, body=identity_request(version="1.0.8"))
    assert updated.uuid == identity.uuid and updated.version == "1.0.8"
    # The client has no PATCH; Waldur's route takes one, and so does the ledger.
    patched = owner.get_httpx_client().patch(f"/api/marketplace-site-agent-identities/{identity.uuid.hex}/",
                                             json={"name": "renamed"})
    assert patched.status_code == 200
    assert (patched.json()["name"], patched.json()["version"]) == ("renamed", "1.0.8")


@pytest.mark.parametrize("user", ("provider-manager", "support"))
def test_readers_who_may_not_report_may_not_register(connect, user):
    with pytest.raises(UnexpectedStatus) as error:
        create_identity.sync(body=identity_request(), client=connect(user))
    assert error.value.status_code == 403


@pytest.mark.parametrize("user", (*CONSUMERS, *NON_READERS))
def test_identities_are_hidden_from_others(connect, user):
    identity = create_identity.sync(body=identity_request(), client=connect("staff"))
    assert list_identities.sync(client=connect(user)) == []
    with pytest.raises(UnexpectedStatus) as error:
        retrieve_identity.sync(uuid=identity.uuid.hex, client=connect(user))
    assert error.value.status_code == 404


LISTS = {  # each list the agent reads -> how many records staff sees in the test catalog (with two identities)
    "/api/marketplace-provider-offerings/": 2, "/api/marketplace-service-providers/": 1,
    "/api/marketplace-provider-resources/": 4, "/api/marketplace-offering-users/": 1,
    "/api/marketplace-site-agent-identities/": 2,
}


@pytest.mark.parametrize("path, total", LISTS.items())
def test_every_list_is_paged_selects_fields_and_links_records_that_resolve(connect, path, total):
    staff = connect("staff")
    for name in ("agent-1", "agent-2"):
        create_identity.sync(body=identity_request(name), client=staff)
    http = staff.get_httpx_client()
    first = http.get(path, params={"page_size": 1, "field": ["uuid", "url"]})
    assert first.headers["X-Result-Count"] == str(total)
    assert [set(record) for record in first.json()] == [{"uuid", "url"}]
    assert ('rel="next"' in first.headers["Link"]) == (total > 1)
    last = http.get(path, params={"page_size": 1, "page": total})
    assert len(last.json()) == 1 and 'rel="next"' not in last.headers["Link"]
    assert http.get(path, params={"page_size": 1, "page": total + 1}).status_code == 404
    (record,) = first.json()
    assert http.get(record["url"]).json()["uuid"] == record["uuid"]
