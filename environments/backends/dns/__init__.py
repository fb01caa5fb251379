"""DNS: records that point each exposed component's host at the runtime's address."""

from abc import ABC, abstractmethod
from collections.abc import Callable

Log = Callable[[str], None]


class Dns(ABC):
    @abstractmethod
    def upsert(self, hosts: list[str], target: str | None, log: Log) -> None: ...

    @abstractmethod
    def delete(self, hosts: list[str], log: Log) -> None:
        """Remove the records; a record that is already gone is not an error."""

    def records(self) -> list[str] | None:
        """The hosts this backend holds records for under PORTAL_BASE_DOMAIN, so the reconciler
        can find those of torn-down environments; None: this backend cannot list them."""
        return None
