"""Production pool: a database plus a user of its own per slot on a shared MySQL/MariaDB server,
through PyMySQL. The admin DSN (PORTAL_POOL_MYSQL_URL) needs CREATE, DROP, CREATE USER and GRANT
OPTION. On a fresh server remove the anonymous users ('' @ localhost): they shadow 'slot'@'%' on
loopback logins and make the slot users' logins fail with "Access denied"."""

import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO
from urllib.parse import quote, unquote, urlparse

import pymysql
from django.conf import settings

from environments import sandbox
from environments.backends import BackendError
from environments.backends.pool import DbInfo, Pool, Progress, feed

CONNECT_TIMEOUT = 5
RESTORE_TIMEOUT = 3600
DEFINER = re.compile(rb"DEFINER=`[^`]*`@`[^`]*`")
# Server errors that mean "not reachable right now" (can't connect, gone away, lost, too many).
RETRYABLE = {1040, 1205, 1213, 2002, 2003, 2006, 2013}
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _parse(dsn: str) -> tuple[str, int, str, str]:
    url = urlparse(dsn)
    if url.scheme not in {"mysql", "mariadb"} or not url.hostname:
        raise BackendError("PORTAL_POOL_MYSQL_URL must look like mysql://user:pw@host:port/")
    return url.hostname, url.port or 3306, unquote(url.username or ""), unquote(url.password or "")


def _user(name: str) -> str:
    """The slot's account, for a statement run with parameters (hence %% for the host)."""
    return f"'{name}'@'%%'"


def _error(action: str, exc: pymysql.MySQLError) -> BackendError:
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    return BackendError(f"MySQL pool: {action}: {exc.args[-1] if exc.args else exc}",
                        retryable=code in RETRYABLE)


class MysqlPool(Pool):
    def __init__(self) -> None:
        self.host, self.port, self.user, self.password = _parse(settings.PORTAL_POOL_MYSQL_URL)
        public = settings.PORTAL_POOL_PUBLIC_HOST or f"{self.host}:{self.port}"
        host, _, port = public.rpartition(":") if ":" in public else (public, "", "3306")
        self.public_host, self.public_port = host, int(port or 3306)
        self.prefix = settings.PORTAL_POOL_PREFIX
        # PyMySQL builds a TLS context (~20 ms of CPU) for every connection to try TLS; on
        # loopback it protects nothing, elsewhere it is kept.
        self.options = {"ssl_disabled": True} if self.host in LOOPBACK else {}

    @contextmanager
    def _admin(self, action: str) -> Iterator[pymysql.cursors.Cursor]:
        try:
            db = pymysql.connect(host=self.host, port=self.port, user=self.user,
                                 password=self.password, autocommit=True,
                                 connect_timeout=CONNECT_TIMEOUT, **self.options)
        except pymysql.MySQLError as exc:
            raise _error(f"{action}: cannot connect as {self.user}@{self.host}:{self.port}",
                         exc) from exc
        try:
            with db.cursor() as cursor:
                yield cursor
        except pymysql.MySQLError as exc:
            raise _error(action, exc) from exc
        finally:
            db.close()

    def _check_name(self, slot: str) -> str:
        # Slot names become identifiers; the settings allow only these characters.
        if not slot.replace("_", "").isalnum() or not slot.isascii():
            raise BackendError(f"slot name {slot!r} is not a plain identifier")
        return slot

    def create(self, slot: str) -> str:
        name = self._check_name(slot)
        secret = secrets.token_urlsafe(24)
        with self._admin(f"create {name}") as cursor:
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
            cursor.execute(f"CREATE USER IF NOT EXISTS {_user(name)} IDENTIFIED BY %s", (secret,))
            cursor.execute(f"ALTER USER {_user(name)} IDENTIFIED BY %s", (secret,))
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO {_user(name)}", ())
        return secret

    def reset(self, slot: str) -> str:
        name = self._check_name(slot)
        secret = secrets.token_urlsafe(24)
        with self._admin(f"reset {name}") as cursor:
            # Rotate first, then cut off open sessions: the last lessee cannot write again.
            cursor.execute(f"CREATE USER IF NOT EXISTS {_user(name)} IDENTIFIED BY %s", (secret,))
            cursor.execute(f"ALTER USER {_user(name)} IDENTIFIED BY %s", (secret,))
            cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s",
                           (name,))
            for (session,) in cursor.fetchall():
                with suppress(pymysql.err.OperationalError):  # it may have ended meanwhile
                    cursor.execute(f"KILL {int(session)}")
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO {_user(name)}", ())
        return secret

    def restore_template(self, template: str, dump: IO[bytes]) -> str:
        """As the template's own user, whose rights end at its database: a dump's USE of
        another database, CREATE USER or GRANT is refused by the server."""
        secret = self.create(template)
        with self._admin(f"empty {template}") as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{template}`")
            cursor.execute(f"CREATE DATABASE `{template}`")
        self._load(template, secret, dump, "dataset restore")
        return secret

    def copy_template(self, template: str, template_secret: str, slot: str, secret: str,
                      progress: Progress) -> None:
        """The schema through mariadb-dump (as the template's user) into mariadb (as the
        slot's), the rows by the server itself, INSERT ... SELECT table by table as the slot's
        user, who may read the template for the copy's length: 3-4 times faster than dumping
        the rows (benchmarks/datasets.py). Triggers come last, so the copy fires none."""
        with self._as_slot(slot, secret, f"empty {slot}", in_database=False) as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{self._check_name(slot)}`")
            cursor.execute(f"CREATE DATABASE `{slot}`")
        self._dump_into(template, template_secret, slot, secret, "--no-data", "--skip-triggers")
        with self._admin(f"let {slot} read {template}") as cursor:
            cursor.execute(f"GRANT SELECT ON `{self._check_name(template)}`.* TO {_user(slot)}",
                           ())
        try:
            self._copy_rows(template, slot, secret, progress)
        finally:
            with self._admin(f"end {slot}'s reading of {template}") as cursor:
                cursor.execute(f"REVOKE SELECT ON `{template}`.* FROM {_user(slot)}", ())
        self._dump_into(template, template_secret, slot, secret, "--no-create-info",
                        "--no-data", "--triggers")

    def _copy_rows(self, template: str, slot: str, secret: str, progress: Progress) -> None:
        with self._as_slot(slot, secret, f"copy {template} into {slot}") as cursor:
            cursor.execute("SET SESSION foreign_key_checks = 0")
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE "
                           "table_schema = %s AND table_type = 'BASE TABLE'", (template,))
            for (table,) in cursor.fetchall():
                name = table.replace("`", "``")
                cursor.execute(f"INSERT INTO `{name}` SELECT * FROM `{template}`.`{name}`")
                progress(f"copied {table}: {cursor.rowcount} rows")

    def _dump_into(self, template: str, template_secret: str, slot: str, secret: str,
                   *options: str) -> None:
        with tempfile.TemporaryFile() as said:
            dump = subprocess.Popen(
                [_tool("mariadb-dump", "mysqldump"), "--no-defaults", "--single-transaction",
                 "--skip-comments", *options, *self._login(template), template],
                stdout=subprocess.PIPE, stderr=said, env={"MYSQL_PWD": template_secret})
            assert dump.stdout is not None
            try:
                self._load(slot, secret, _WithoutDefiners(dump.stdout), f"copy into {slot}")
            finally:
                dump.stdout.close()
                dump.wait()
            said.seek(0)
            if dump.returncode:
                raise BackendError(f"dump of {template} failed: "
                                   f"{said.read().decode(errors='replace').strip()}")

    def _login(self, user: str) -> list[str]:
        return [f"--host={self.host}", f"--port={self.port}", f"--user={user}"]

    def _load(self, database: str, secret: str, source: IO[bytes], what: str,
              progress: Progress | None = None) -> None:
        """The mariadb client as `database`'s user, in the sandbox and in its own --sandbox
        mode (no shell escapes, no reading or writing files from the SQL)."""
        command = sandbox.command([
            _tool("mariadb", "mysql"), "--no-defaults", "--sandbox", "--batch",
            *self._login(database), f"--database={database}"])
        with tempfile.TemporaryFile() as said:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=said, env={"MYSQL_PWD": secret})
            feed(source, process, what, progress)
            try:
                process.wait(RESTORE_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                process.kill()
                process.wait()
                raise BackendError(f"{what} did not finish in {RESTORE_TIMEOUT} s") from exc
            said.seek(0)
            if process.returncode:
                text = said.read().decode(errors="replace").strip()
                raise BackendError(f"{what} failed: {text}")

    def drop_template(self, template: str) -> None:
        self.drop(template)

    def drop(self, slot: str) -> None:
        name = self._check_name(slot)
        with self._admin(f"drop {name}") as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"DROP USER IF EXISTS {_user(name)}", ())

    @contextmanager
    def _as_slot(self, slot: str, secret: str, action: str,
                 in_database: bool = True) -> Iterator[pymysql.cursors.Cursor]:
        try:
            db = pymysql.connect(
                host=self.host, port=self.port, user=slot, password=secret,
                database=slot if in_database else None,
                autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS, **self.options,
            )
        except pymysql.MySQLError as exc:
            raise _error(f"{action}: cannot connect as {slot}", exc) from exc
        try:
            with db.cursor() as cursor:
                yield cursor
                while cursor.nextset():
                    pass
        except pymysql.MySQLError as exc:
            raise _error(action, exc) from exc
        finally:
            db.close()

    def check(self, slot: str, secret: str) -> None:
        with self._as_slot(slot, secret, f"check {slot}") as cursor:
            cursor.execute("SELECT 1")

    def seed(self, slot: str, secret: str, sql: str) -> None:
        with self._as_slot(slot, secret, f"seed {slot}") as cursor:
            cursor.execute(sql)

    def existing(self) -> set[str]:
        with self._admin("list databases") as cursor:
            pattern = self.prefix.replace("\\", "\\\\").replace("_", "\\_") + "%"
            cursor.execute("SHOW DATABASES LIKE %s", (pattern,))
            return {row[0] for row in cursor.fetchall()}

    def connection(self, slot: str, secret: str = "") -> DbInfo:
        host, port = self.public_host, self.public_port
        return DbInfo(
            slot=slot, name=slot, host=host, port=port, user=slot, password=secret,
            url=f"mysql://{slot}:{quote(secret, safe='')}@{host}:{port}/{slot}",
        )


def _tool(*names: str) -> str:
    for name in names:
        if found := shutil.which(name):
            return found
    raise BackendError(f"{names[0]} is missing on the worker (Debian package mariadb-client)")


class _WithoutDefiners:
    """mariadb-dump names the template's user as DEFINER of its views and triggers; the slot's
    user may create them only as itself. Read line by line (a dump's line is a statement)."""

    def __init__(self, stream: Iterable[bytes]) -> None:
        self.lines = iter(stream)

    def read(self, size: int = -1) -> bytes:
        line = next(self.lines, b"")
        return DEFINER.sub(b"", line) if b"DEFINER" in line else line
