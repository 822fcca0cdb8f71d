"""Site agent registrations: an agent's identity per offering, its services and their processors.

Registering is a write like a report: staff, and whoever may report usage for the offering. An
agent registers again on every cycle; what it says again unchanged appends nothing.
"""

import dataclasses
import uuid

from ledger.commands.usage import PermissionDenied
from ledger.database import Ledger
from ledger.log import events
from ledger.log.records import NewEvent
from ledger.rules import clock
from ledger.rules.access import Caller
from projections import provider_catalog, site_agents

AGENT_NAMESPACE = uuid.UUID("5e7a9c1b-0d4f-4b8e-a2c6-61676e747321")
# Said again on every cycle with the time of the call: not a change of the registration.
VOLATILE_IDENTITY_FIELDS = ("last_restarted",)


class RegistrationRejected(Exception):
    """A registration the ledger refuses; `body` is the DRF-shaped 400 body."""

    def __init__(self, body: dict):
        super().__init__(body)
        self.body = body


class RegistrationNotFound(Exception):
    """The identity or service registered under does not exist, or the caller may not read it."""


@dataclasses.dataclass(frozen=True)
class Registration:
    """What a decision needs: the offering registered for and the stream's last data and version."""

    offering: dict | None  # uuid and provider_uuid (its customer)
    held: dict | None
    version: int


def identity_stream(identity_uuid: str) -> str:
    return f"agent-identity/{identity_uuid}"


def service_uuid(identity_uuid: str, name: str) -> str:
    """A service's UUID, from its identity and name: registering the same name again is the same service."""
    return uuid.uuid5(AGENT_NAMESPACE, f"service/{identity_uuid}/{name}").hex


def processor_uuid(service: str, name: str) -> str:
    """A processor's UUID, from its service and name."""
    return uuid.uuid5(AGENT_NAMESPACE, f"processor/{service}/{name}").hex


def decide_registration(
    registration: Registration, caller: Caller, stream: str, event_type: str, data: dict, occurred_at: str,
    volatile: tuple = (),
) -> list[NewEvent]:
    """Permission on the offering, then one event unless the data says what the stream holds."""
    offering = registration.offering
    if not caller.may_write(offering["uuid"], offering["provider_uuid"]):
        raise PermissionDenied()
    held = registration.held
    if held is not None and {k: v for k, v in held.items() if k not in volatile} == {
        k: v for k, v in data.items() if k not in volatile
    }:
        return []
    return [events.new(stream, registration.version + 1, event_type, data, occurred_at, caller.id)]


def offering_of(ledger: Ledger, caller: Caller, offering_uuid: str) -> dict:
    """The offering an identity is registered for; a DRF-shaped 400 when it does not exist or the
    caller may not see it (as Waldur's querysets hide it)."""
    offering = provider_catalog.offering(ledger.conn, offering_uuid)
    if offering is None or not caller.may_read_offering(offering["uuid"], offering["provider_uuid"]):
        raise RegistrationRejected({"offering": [f"Object with uuid={offering_uuid} does not exist."]})
    return offering


def registration(ledger: Ledger, offering: dict, stream: str) -> Registration:
    last = ledger.store.last_event(stream)
    return Registration(offering, events.upgrade(last).data if last else None, last.version if last else 0)


def register_identity(ledger: Ledger, caller: Caller, fields: dict, identity_uuid: str | None = None) -> str:
    """Creates an identity (a new UUID), or updates `identity_uuid` with `fields`; returns its UUID."""
    identity_uuid = identity_uuid or uuid.uuid4().hex
    stream = identity_stream(identity_uuid)

    def decide() -> list[NewEvent]:
        offering = offering_of(ledger, caller, fields["offering_uuid"])
        held = registration(ledger, offering, stream)
        if held.held and held.held["offering_uuid"] != offering["uuid"]:  # moved: the offering it leaves is written too
            left = provider_catalog.offering(ledger.conn, held.held["offering_uuid"])
            if not caller.may_write(left["uuid"], left["provider_uuid"]):
                raise PermissionDenied()
        data = {"uuid": identity_uuid, **fields}
        return decide_registration(held, caller, stream, "AgentIdentityRegistered", data, clock.stored(clock.now()),
                                   VOLATILE_IDENTITY_FIELDS)

    ledger.write(decide)
    return identity_uuid


def register_service(ledger: Ledger, caller: Caller, identity_uuid: str, name: str, mode: str | None) -> str:
    """Registers a service of an identity by name (again: its mode is updated); returns its UUID."""
    identity = site_agents.identity(ledger.conn, identity_uuid)
    if identity is None or not caller.may_read_offering(identity["offering_uuid"], identity["provider_uuid"]):
        raise RegistrationNotFound()
    uuid_ = service_uuid(identity_uuid, name)
    stream = f"agent-service/{uuid_}"
    data = {"uuid": uuid_, "identity_uuid": identity_uuid, "name": name, "mode": mode}
    ledger.write(lambda: decide_registration(
        registration(ledger, offering_of(ledger, caller, identity["offering_uuid"]), stream), caller, stream,
        "AgentServiceRegistered", data, clock.stored(clock.now()),
    ))
    return uuid_


def register_processor(ledger: Ledger, caller: Caller, service: str, name: str, backend_type: str,
                       backend_version: str | None) -> str:
    """Registers a processor of a service by name (again: its backend is updated); returns its UUID."""
    found = site_agents.service(ledger.conn, service)
    if found is None or not caller.may_read_offering(found["offering_uuid"], found["provider_uuid"]):
        raise RegistrationNotFound()
    uuid_ = processor_uuid(service, name)
    stream = f"agent-processor/{uuid_}"
    data = {"uuid": uuid_, "service_uuid": service, "name": name, "backend_type": backend_type,
            "backend_version": backend_version}
    ledger.write(lambda: decide_registration(
        registration(ledger, offering_of(ledger, caller, found["offering_uuid"]), stream), caller, stream,
        "AgentProcessorRegistered", data, clock.stored(clock.now()),
    ))
    return uuid_
