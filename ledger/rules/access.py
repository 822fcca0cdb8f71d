"""Who may read and who may write usage records and registrations, from a caller's roles."""

import dataclasses
import uuid


@dataclasses.dataclass(frozen=True)
class Caller:
    """An authenticated user and the scopes of their roles."""

    id: int
    username: str
    is_staff: bool = False
    is_support: bool = False
    customers_owned: frozenset = frozenset()
    customers_managed: frozenset = frozenset()
    projects: frozenset = frozenset()
    offerings_managed: frozenset = frozenset()

    @property
    def sees_everything(self) -> bool:
        return self.is_staff or self.is_support

    def may_write(self, offering_uuid: str, provider_uuid: str) -> bool:
        """Staff, an owner of the offering's provider customer, or a manager of the offering."""
        return self.is_staff or provider_uuid in self.customers_owned or offering_uuid in self.offerings_managed

    def may_read(self, offering_uuid: str, provider_uuid: str, project_uuid: str, customer_uuid: str) -> bool:
        return self.sees_everything or any(
            (
                customer_uuid in self.customers_owned,
                project_uuid in self.projects,
                provider_uuid in self.customers_owned | self.customers_managed,
                offering_uuid in self.offerings_managed,
            )
        )

    def may_read_offering(self, offering_uuid: str, provider_uuid: str) -> bool:
        """Staff, support, and the offering's provider side: owners and managers of its customer, its managers."""
        return self.sees_everything or provider_uuid in self.customers_owned | self.customers_managed or (
            offering_uuid in self.offerings_managed
        )

    def visible_scopes(self) -> dict[str, list[str]]:
        """The column → allowed values that `may_read` checks, for use in a query."""
        return {
            "customer_uuid": sorted(self.customers_owned),
            "project_uuid": sorted(self.projects),
            "provider_uuid": sorted(self.customers_owned | self.customers_managed),
            "offering_uuid": sorted(self.offerings_managed),
        }


USER_NAMESPACE = uuid.UUID("2f1e6c3a-8b7d-4e59-9a0c-75736572730a")


def user_uuid(user_id: int) -> str:
    """A user's UUID, stable and derived from their id: the catalog numbers users, Waldur names them by UUID."""
    return uuid.uuid5(USER_NAMESPACE, str(user_id)).hex
