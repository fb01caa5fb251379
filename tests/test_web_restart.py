"""The web process restarted in the middle of a run changes nothing: the run is the worker's,
its state the database's. Web and worker run as separate processes, as in production."""

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.crash_worker import processes_under
from tests.support.live import ROOT, free_port, kill_previews, portal_env


class Processes:
    def __init__(self, var: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = portal_env(var, PORTAL_BASE_URL=self.url,
                              DJANGO_SUPERUSER_PASSWORD="admin-password")
        self.var = var

    def manage(self, *args: str) -> str:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, check=True, timeout=120).stdout

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def web(self) -> subprocess.Popen[bytes]:
        web = self.start("runserver", f"127.0.0.1:{self.port}", "--noreload")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=2).close()
                return web
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the web process did not come up")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    found = Processes(tmp_path / "portal-var")
    found.manage("migrate", "-v0")
    found.manage("setup_demo")
    found.manage("pool", "ensure")
    found.manage("createsuperuser", "--noinput", "--username", "admin",
                 "--email", "admin@example.com")
    yield found
    kill_previews(found.var)


def call(processes: Processes, token: str, method: str, path: str) -> dict:
    request = urllib.request.Request(
        processes.url + "/api/v1" + path, method=method,
        data=json.dumps({"project": "demo", "branch": "main"}).encode() if method == "POST"
        else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_web_restart_mid_run_changes_nothing(processes: Processes) -> None:
    token = processes.manage("create_api_token", "admin").strip().splitlines()[-1]
    worker = processes.start("qcluster")
    web = processes.web()
    try:
        launched = call(processes, token, "POST", "/environments")
        web.kill()  # mid-run: the worker is deploying meanwhile
        web.wait()
        web = processes.web()
        environment = launched
        for _ in range(600):
            environment = call(processes, token, "GET", f"/environments/{launched['id']}")
            if environment["runs"][0]["status"] not in ("pending", "waiting", "running"):
                break
            time.sleep(0.1)
    finally:
        web.kill()
        worker.terminate()
        worker.wait(timeout=30)

    assert environment["status"] == "ready", environment["status_detail"]
    assert [run["status"] for run in environment["runs"]] == ["succeeded"]
    assert all(step["status"] == "succeeded" for step in environment["runs"][0]["steps"])
    assert processes_under(processes.var / "runtime") == 2
