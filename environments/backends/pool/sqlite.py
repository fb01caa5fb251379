"""Embedded pool: one SQLite file a slot, each in a directory of its own under
PORTAL_VAR_DIR/pool (a slot's journal sits beside it, and branch code is given that directory and
no other slot's)."""

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from environments import sandbox
from environments.backends import BackendError
from environments.backends.pool import DbInfo, Pool

SUFFIX = ".sqlite3"
SEED_SCRIPT = Path(__file__).resolve().parent / "sqlite_seed.py"
SEED_TIMEOUT = 120


class SqlitePool(Pool):
    def __init__(self) -> None:
        self.root = Path(settings.VAR_DIR) / "pool"

    def _path(self, slot: str) -> Path:
        return self.root / slot / f"{slot}{SUFFIX}"

    def create(self, slot: str) -> str:
        path = self._path(slot)
        path.parent.mkdir(parents=True, exist_ok=True)
        flat = self.root / f"{slot}{SUFFIX}"
        if flat.exists() and not path.exists():  # a slot of the one-directory layout
            flat.rename(path)
        try:
            sqlite3.connect(path).close()
        except sqlite3.Error as exc:
            raise BackendError(f"cannot open SQLite slot {slot}: {exc}") from exc
        return ""

    def reset(self, slot: str) -> str:
        self.drop(slot)
        return self.create(slot)

    def drop(self, slot: str) -> None:
        shutil.rmtree(self._path(slot).parent, ignore_errors=True)
        for suffix in ("", "-wal", "-shm", "-journal"):
            (self.root / f"{slot}{SUFFIX}{suffix}").unlink(missing_ok=True)

    def check(self, slot: str, secret: str) -> None:
        if not self._path(slot).exists():
            raise BackendError(f"SQLite slot {slot} is missing ({self._path(slot)})")

    def seed(self, slot: str, secret: str, sql: str) -> None:
        """In the sandbox: the SQL is the branch's."""
        path = self._path(slot)
        command = sandbox.command(
            [sys.executable, "-I", str(SEED_SCRIPT), str(path)],
            writable=[path.parent], readable=[SEED_SCRIPT], cwd=path.parent)
        try:
            done = subprocess.run(command, input=sql.encode(), capture_output=True,
                                  timeout=SEED_TIMEOUT, env={}, check=False)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(f"seed SQL of {slot} did not finish in {SEED_TIMEOUT} s") from exc
        if done.returncode:
            said = done.stderr.decode(errors="replace").strip()
            raise BackendError(f"seed SQL failed in {slot}: {said}")

    def existing(self) -> set[str]:
        files = [*self.root.glob(f"*/*{SUFFIX}"), *self.root.glob(f"*{SUFFIX}")]
        return {p.name.removesuffix(SUFFIX) for p in files}

    def connection(self, slot: str, secret: str = "") -> DbInfo:
        path = self._path(slot)
        return DbInfo(
            slot=slot, name=path.name, host="", port=None, user="", password="",
            url=f"sqlite:///{path}", directory=str(path.parent),
        )
