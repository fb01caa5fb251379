"""Branch code never runs with the portal's privileges: on the local runtime the smoke suite, the
seed and the components run in bubblewrap, seeing none of the portal's processes, files or
environment (environments/sandbox.py)."""

import json
import os
import shutil
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from environments import demo, sandbox
from environments.backends import BackendError
from environments.backends.pool import sqlite_seed
from environments.models import Environment, EnvironmentStatus
from tests.support.live import Portal, running_portal
from tests.support.runs import launch
from tests.support.tools import require_tool

# What a portal of this test holds in its environment; none of it may reach branch code.
CANARIES = {
    "PORTAL_SECRET_KEY": "canary-secret-key-5f1d2a",
    "PORTAL_GITHUB_TOKEN": "canary-github-token-77c0e1",
    "SLACK_BOT_TOKEN": "xoxb-canary-slack-93ab41",
}
FINISHED = {"ready", "degraded", "failed"}


@pytest.fixture
def bwrap_installed() -> None:
    require_tool(bool(shutil.which("bwrap")), "bubblewrap (Debian package bubblewrap)")


@pytest.fixture
def hostile_portal(tmp_path: Path, bwrap_installed: None) -> Iterator[Portal]:
    """A real portal (web + worker) whose demo repository has the leak branches."""
    var = tmp_path / "portal-var"
    demo.build_repository(var / "demo-repo", demo.BRANCHES | demo.LEAK_BRANCHES)
    with running_portal(var, **CANARIES) as portal:
        yield portal


def _api(portal: Portal, token: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        portal.url + "/api/v1" + path, data=json.dumps(body).encode() if body else None,
        method="POST" if body else "GET",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _launched(portal: Portal, token: str, branch: str) -> dict:
    """The environment once its deploy run has ended."""
    pk = _api(portal, token, "/environments", {"project": "demo", "branch": branch})["id"]
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        found = _api(portal, token, f"/environments/{pk}")
        if found["status"] in FINISHED and all(run["finished_at"] for run in found["runs"]):
            return found
        time.sleep(1)
    raise AssertionError(f"{branch} did not finish: {found}")


def test_a_hostile_branch_finds_none_of_the_portals_secrets(hostile_portal: Portal) -> None:
    portal = hostile_portal
    token = portal.manage("create_api_token", "admin").strip().splitlines()[-1]

    leak = _launched(portal, token, "leak/portal-secrets")
    assert leak["status"] == "ready", leak
    assert leak["smoke"]["failed"] == 0
    with urllib.request.urlopen(leak["smoke"]["report_url"], timeout=30) as response:
        report = response.read().decode()
    for tried in ("test_no_process_shows_the_portal_environment", "test_no_service_account_token",
                  "test_no_portal_database_is_visible", "environ/cmdline files",
                  "serviceaccount/token", "opened every SQLite file"):
        assert tried in report
    seen = report + json.dumps(leak)
    assert not [name for name, value in CANARIES.items() if value in seen]

    seeded = _launched(portal, token, "leak/seed-attach")
    assert seeded["status"] == "failed"
    assert "seed SQL failed" in seeded["status_detail"]
    assert "not authorized" in seeded["status_detail"]
    db = sqlite3.connect(portal.var_dir / "portal.sqlite3")
    owned = db.execute("SELECT count(*) FROM auth_user WHERE first_name = 'owned by a branch'")
    assert owned.fetchone() == (0,)
    db.close()


def test_seed_sql_cannot_attach_another_database(tmp_path: Path) -> None:
    other = tmp_path / "portal.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE auth_user (is_superuser INT)").connection.close()
    slot = tmp_path / "slot.sqlite3"
    for sql in (f"ATTACH DATABASE '{other}' AS portal; UPDATE portal.auth_user SET is_superuser=1",
                f"VACUUM INTO '{tmp_path / 'copy.sqlite3'}'"):
        with pytest.raises(sqlite3.DatabaseError, match="not authorized|denied"):
            sqlite_seed.seed(str(slot), sql)
    assert not (tmp_path / "copy.sqlite3").exists()
    sqlite_seed.seed(str(slot), "CREATE TABLE items (name TEXT); INSERT INTO items VALUES ('x')")


@pytest.mark.django_db(transaction=True)
def test_components_run_unprivileged_and_alone(settings, demo_project, developer, pool_of,
                                               bwrap_installed: None) -> None:
    """What a component sees of the machine: its own processes, no capabilities, no portal."""
    pool_of(1)
    demo_project.components.filter(name="api").update(
        start_command="cat /proc/self/status > seen.txt; ls /proc >> seen.txt; "
                      + demo_project.components.get(name="api").start_command)
    environment = launch(demo_project, "main", developer)
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    seen = (Path(settings.VAR_DIR) / "runtime" / environment.env_key / "src" / "seen.txt")
    status = dict(line.split(":\t", 1) for line in seen.read_text().splitlines() if ":\t" in line)
    assert status["CapEff"] == "0000000000000000"
    if os.geteuid() == 0:
        assert status["Uid"].split()[0] == str(sandbox.NOBODY)
    pids = [line for line in seen.read_text().splitlines() if line.isdigit()]
    assert len(pids) < 6, pids  # the sandbox's own few, not the machine's


def test_required_sandbox_refuses_to_run_branch_code_without_bubblewrap(
        settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    settings.PORTAL_SANDBOX = "required"
    with pytest.raises(BackendError, match="bubblewrap"):
        sandbox.command(["true"])
    with pytest.raises(SystemCheckError, match="PORTAL_SANDBOX=required"):
        call_command("check")


@pytest.mark.django_db(transaction=True)
def test_without_bubblewrap_the_environment_page_says_branch_code_is_not_sandboxed(
        client, admin, demo_project, pool_of, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    pool_of(1)
    environment = launch(demo_project, "main", admin)
    client.force_login(admin)
    page = client.get(f"/environments/{environment.pk}").content.decode()
    assert "branch code runs as the portal&#x27;s user" in page
    assert Environment.objects.get(pk=environment.pk).status == EnvironmentStatus.READY
