"""Embedded pool: one SQLite file a slot, under PORTAL_VAR_DIR/pool."""

import sqlite3
from pathlib import Path

from django.conf import settings

from environments.backends import BackendError
from environments.backends.pool import DbInfo, Pool

SUFFIX = ".sqlite3"


class SqlitePool(Pool):
    def __init__(self) -> None:
        self.root = Path(settings.VAR_DIR) / "pool"

    def _path(self, slot: str) -> Path:
        return self.root / f"{slot}{SUFFIX}"

    def _connect(self, slot: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self._path(slot))
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open SQLite slot {slot}: {exc}") from exc

    def create(self, slot: str) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        self._connect(slot).close()
        return ""

    def reset(self, slot: str) -> str:
        self.drop(slot)
        return self.create(slot)

    def drop(self, slot: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self._path(slot)}{suffix}").unlink(missing_ok=True)

    def check(self, slot: str, secret: str) -> None:
        if not self._path(slot).exists():
            raise BackendError(f"SQLite slot {slot} is missing ({self._path(slot)})")

    def seed(self, slot: str, secret: str, sql: str) -> None:
        db = self._connect(slot)
        try:
            db.executescript(sql)
        except sqlite3.Error as exc:
            raise BackendError(f"seed SQL failed in {slot}: {exc}") from exc
        finally:
            db.close()

    def existing(self) -> set[str]:
        return {p.name.removesuffix(SUFFIX) for p in self.root.glob(f"*{SUFFIX}")}

    def connection(self, slot: str, secret: str = "") -> DbInfo:
        path = self._path(slot)
        return DbInfo(
            slot=slot, name=path.name, host="", port=None, user="", password="",
            url=f"sqlite:///{path}",
        )
