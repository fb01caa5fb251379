"""DB pool: the physical databases behind DbSlot rows. The portal database decides who holds
which slot; a pool backend only creates, checks, seeds, resets and drops the databases and their
users. A slot's secret (its user's password) is returned to the portal, which keeps it sealed."""

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
    # Where the database's files are, for a database that is files on this machine: the one
    # directory branch code (components, the smoke suite) may write besides its own.
    directory: str = ""

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
    def create(self, slot: str) -> str:
        """Make the slot's database and user exist (adopting existing ones); return the secret."""

    @abstractmethod
    def reset(self, slot: str) -> str:
        """Empty the database, cut off its users, rotate the secret; return the new secret."""

    @abstractmethod
    def drop(self, slot: str) -> None:
        """Remove the database and user; not an error when they are already gone."""

    @abstractmethod
    def check(self, slot: str, secret: str) -> None:
        """Connect as the slot's own user, as the environment will."""

    @abstractmethod
    def seed(self, slot: str, secret: str, sql: str) -> None:
        """Run an SQL script in the slot's database, as the slot's user."""

    @abstractmethod
    def existing(self) -> set[str]:
        """Slot databases present on the server (named with the pool's prefix)."""

    @abstractmethod
    def connection(self, slot: str, secret: str = "") -> DbInfo:
        """How to reach the slot; without the secret, for showing (DbInfo.public)."""
