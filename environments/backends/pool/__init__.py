"""DB pool: the physical databases behind DbSlot rows. The portal database decides who holds
which slot; a pool backend only creates, resets and drops the databases themselves."""

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class DbInfo:
    slot: str
    name: str
    host: str
    port: int | None
    user: str
    password: str
    url: str

    def public(self) -> dict[str, str]:
        """What any portal user may see: never the password or a DSN carrying it."""
        host = f"{self.host}:{self.port}" if self.host and self.port else self.host
        return {"slot": self.slot, "name": self.name, "host": host}

    def environ(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.url,
            "DB_NAME": self.name,
            "DB_HOST": self.host,
            "DB_PORT": str(self.port or ""),
            "DB_USER": self.user,
            "DB_PASSWORD": self.password,
        }


class Pool(ABC):
    @abstractmethod
    def create(self, slot: str) -> None:
        """Make the slot's database exist (adopting one that already does)."""

    @abstractmethod
    def reset(self, slot: str) -> None:
        """Empty the slot's database so the next lessee starts clean."""

    @abstractmethod
    def drop(self, slot: str) -> None:
        """Remove the slot's database; not an error when it is already gone."""

    @abstractmethod
    def connection(self, slot: str) -> DbInfo: ...
