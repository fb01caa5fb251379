"""Embedded pool: one SQLite file a slot, under PORTAL_VAR_DIR/pool."""

import sqlite3
from pathlib import Path

from django.conf import settings

from environments.backends import BackendError
from environments.backends.pool import DbInfo, Pool


class SqlitePool(Pool):
    def __init__(self) -> None:
        self.root = Path(settings.VAR_DIR) / "pool"

    def _path(self, slot: str) -> Path:
        return self.root / f"{slot}.sqlite3"

    def create(self, slot: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            sqlite3.connect(self._path(slot)).close()
        except sqlite3.Error as exc:
            raise BackendError(f"cannot create SQLite slot {slot}: {exc}") from exc

    def reset(self, slot: str) -> None:
        self.drop(slot)
        self.create(slot)

    def drop(self, slot: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self._path(slot)}{suffix}").unlink(missing_ok=True)

    def connection(self, slot: str) -> DbInfo:
        path = self._path(slot)
        return DbInfo(
            slot=slot, name=path.name, host="", port=None, user="", password="",
            url=f"sqlite:///{path}",
        )
