"""DB pool: the physical databases behind DbSlot rows. The portal database decides who holds
which slot; a pool backend only creates, checks, seeds, resets and drops the databases and their
users. A slot's secret (its user's password) is returned to the portal, which keeps it sealed."""

import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import IO

from django.conf import settings

from environments.backends import BackendError

# Told now and then while a dataset is copied (the step log of a launch that waits for it).
Progress = Callable[[str], None]
CHUNK = 1 << 20
PROGRESS_SECONDS = 2.0


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

    def template(self, version: int) -> str:
        """The name of the template a dataset version is restored into once."""
        return f"{settings.PORTAL_POOL_PREFIX}dataset{version}"

    @abstractmethod
    def restore_template(self, template: str, dump: IO[bytes]) -> str:
        """Restore an SQL dump into a new template, as a user that may write nothing else;
        return its secret. The dump is untrusted: what it does outside the template fails."""

    @abstractmethod
    def copy_template(self, template: str, template_secret: str, slot: str, secret: str,
                      progress: Progress) -> None:
        """Replace what the slot holds with a copy of the template, as the slot's user."""

    @abstractmethod
    def drop_template(self, template: str) -> None:
        """Remove a template; not an error when it is already gone."""

    @abstractmethod
    def existing(self) -> set[str]:
        """Slot databases present on the server (named with the pool's prefix)."""

    @abstractmethod
    def connection(self, slot: str, secret: str = "") -> DbInfo:
        """How to reach the slot; without the secret, for showing (DbInfo.public)."""


def feed(source: IO[bytes], process: subprocess.Popen[bytes], what: str,
         progress: Progress | None = None) -> None:
    """Write `source` to the process's stdin in chunks, telling `progress` how far it got; a
    process that stops reading (it failed) ends the feeding, its exit status tells why."""
    sent, told = 0, time.monotonic()
    assert process.stdin is not None
    try:
        while chunk := source.read(CHUNK):
            process.stdin.write(chunk)
            sent += len(chunk)
            if progress and time.monotonic() - told >= PROGRESS_SECONDS:
                progress(f"{what}: {sent / 1e6:.0f} MB so far")
                told = time.monotonic()
    except BrokenPipeError:
        pass
    except (OSError, EOFError) as exc:  # a gzip dump that is not one, or cut short
        process.kill()
        raise BackendError(f"{what}: cannot read the dump: {exc}") from exc
    finally:
        with suppress(BrokenPipeError):
            process.stdin.close()
