"""Production pool: a database plus a user of its own per slot on a shared MySQL/MariaDB server,
through PyMySQL. The admin DSN (PORTAL_POOL_MYSQL_URL) needs CREATE, DROP, CREATE USER and GRANT
OPTION. On a fresh server remove the anonymous users ('' @ localhost): they shadow 'slot'@'%' on
loopback logins and make the slot users' logins fail with "Access denied"."""

import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from urllib.parse import quote, unquote, urlparse

import pymysql
from django.conf import settings

from environments.backends import BackendError
from environments.backends.pool import DbInfo, Pool

CONNECT_TIMEOUT = 5
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

    def drop(self, slot: str) -> None:
        name = self._check_name(slot)
        with self._admin(f"drop {name}") as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
            cursor.execute(f"DROP USER IF EXISTS {_user(name)}", ())

    @contextmanager
    def _as_slot(self, slot: str, secret: str, action: str) -> Iterator[pymysql.cursors.Cursor]:
        try:
            db = pymysql.connect(
                host=self.host, port=self.port, user=slot, password=secret, database=slot,
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
