"""Embedded pool: one SQLite file a slot, each in a directory of its own under
PORTAL_VAR_DIR/pool (a slot's journal sits beside it, and branch code is given that directory and
no other slot's)."""

import io
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

from django.conf import settings

from environments import sandbox
from environments.backends import BackendError
from environments.backends.pool import DbInfo, Pool, Progress, feed

SUFFIX = ".sqlite3"
SEED_SCRIPT = Path(__file__).resolve().parent / "sqlite_seed.py"
SEED_TIMEOUT = 120
RESTORE_TIMEOUT = 3600


class SqlitePool(Pool):
    def __init__(self) -> None:
        self.root = Path(settings.VAR_DIR) / "pool"
        # Beside the pool, not in it: a template is no slot.
        self.templates = Path(settings.VAR_DIR) / "datasets"

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
        self._run_sql(self._path(slot), io.BytesIO(sql.encode()), "seed SQL", SEED_TIMEOUT)

    def _run_sql(self, path: Path, source: IO[bytes], what: str, timeout: float,
                 *options: str) -> None:
        """sqlite_seed.py in the sandbox: it may write the file's directory and nothing else,
        and its authorizer refuses ATTACH (another file)."""
        command = sandbox.command(
            [sys.executable, "-I", str(SEED_SCRIPT), *options, str(path)],
            writable=[path.parent], readable=[SEED_SCRIPT], cwd=path.parent)
        with tempfile.TemporaryFile() as said:
            process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                       stdout=subprocess.DEVNULL, stderr=said, env={})
            feed(source, process, f"{what} of {path.stem}")
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                process.kill()
                process.wait()
                raise BackendError(f"{what} of {path.stem} did not finish in {timeout:g} s"
                                   ) from exc
            said.seek(0)
            if process.returncode:
                text = said.read().decode(errors="replace").strip()
                raise BackendError(f"{what} failed in {path.stem}: {text}")

    def _template_path(self, template: str) -> Path:
        return self.templates / template / f"{template}{SUFFIX}"

    def restore_template(self, template: str, dump: IO[bytes]) -> str:
        path = self._template_path(template)
        shutil.rmtree(path.parent, ignore_errors=True)
        path.parent.mkdir(parents=True)
        self._run_sql(path, dump, "dataset restore", RESTORE_TIMEOUT, "--restore")
        return ""

    def copy_template(self, template: str, template_secret: str, slot: str, secret: str,
                      progress: Progress) -> None:
        source, path = self._template_path(template), self._path(slot)
        if not source.exists():
            raise BackendError(f"dataset template {template} is missing ({source})")
        self.drop(slot)
        path.parent.mkdir(parents=True)
        partial = path.with_name(path.name + ".copying")
        shutil.copyfile(source, partial)
        partial.replace(path)
        progress(f"copied {source.stat().st_size / 1e6:.1f} MB into {slot}")

    def drop_template(self, template: str) -> None:
        shutil.rmtree(self._template_path(template).parent, ignore_errors=True)

    def existing(self) -> set[str]:
        files = [*self.root.glob(f"*/*{SUFFIX}"), *self.root.glob(f"*{SUFFIX}")]
        return {p.name.removesuffix(SUFFIX) for p in files}

    def connection(self, slot: str, secret: str = "") -> DbInfo:
        path = self._path(slot)
        return DbInfo(
            slot=slot, name=path.name, host="", port=None, user="", password="",
            url=f"sqlite:///{path}", directory=str(path.parent),
        )
