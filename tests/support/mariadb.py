"""A private MariaDB server for the tests: own data directory, own loopback port, started and
stopped by the tests (Debian's mariadb-server package; `make test` installs it)."""

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
ADMIN_USER = "pool_admin"
ADMIN_PASSWORD = "pool-admin-pw"


def available() -> bool:
    return all(Path(p).exists() for p in (MARIADBD, INSTALL_DB))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MariaDB:
    datadir: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.datadir / "mysqld.sock")

    @property
    def tmpdir(self) -> Path:
        # Servers bootstrapping at once in the shared /tmp collide on their temporary tables'
        # names ("Unknown table 'mysql.tmp_user_sys'"): each server has a directory of its own.
        return self.datadir.with_name(self.datadir.name + "-tmp")

    @property
    def admin_url(self) -> str:
        return f"mysql://{ADMIN_USER}:{ADMIN_PASSWORD}@127.0.0.1:{self.port}/"

    def start(self) -> None:
        if not (self.datadir / "mysql").exists():
            self.datadir.mkdir(parents=True, exist_ok=True)
            self.tmpdir.mkdir(exist_ok=True)
            done = subprocess.run(
                [INSTALL_DB, "--no-defaults", f"--datadir={self.datadir}",
                 f"--tmpdir={self.tmpdir}", "--auth-root-authentication-method=normal",
                 "--skip-test-db", "--user=root"],
                capture_output=True, text=True, timeout=120, check=False,
            )
            if done.returncode:
                raise RuntimeError(f"mariadb-install-db failed:\n{done.stdout[-2000:]}")
            fresh = True
        else:
            fresh = False
        self.port = self.port or _free_port()
        self.process = subprocess.Popen(
            [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--tmpdir={self.tmpdir}",
             f"--socket={self.socket}",
             f"--port={self.port}", "--bind-address=127.0.0.1", "--user=root",
             "--skip-name-resolve", "--innodb-buffer-pool-size=64M", "--max-connections=300",
             f"--log-error={self.datadir / 'error.log'}", f"--pid-file={self.datadir / 'pid'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        self._wait()
        if fresh:
            self._prepare()

    def _wait(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                log = (self.datadir / "error.log").read_text()[-2000:]
                raise RuntimeError(f"mariadbd exited:\n{log}")
            try:
                pymysql.connect(unix_socket=self.socket, user="root").close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("mariadbd did not start within 60 s")

    def _prepare(self) -> None:
        """Remove the anonymous users (they shadow 'slot'@'%' on loopback logins) and create
        the admin the portal's pool uses, as an operator would on a real server."""
        db = pymysql.connect(unix_socket=self.socket, user="root", autocommit=True)
        with db.cursor() as cursor:
            cursor.execute("DELETE FROM mysql.global_priv WHERE User = ''")
            cursor.execute("FLUSH PRIVILEGES")
            cursor.execute(f"CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{ADMIN_PASSWORD}'")
            cursor.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION")
        db.close()

    def stop(self) -> None:
        if self.process is None:
            return
        with_timeout = time.monotonic() + 30
        os.killpg(self.process.pid, signal.SIGTERM)
        while self.process.poll() is None and time.monotonic() < with_timeout:
            time.sleep(0.1)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
