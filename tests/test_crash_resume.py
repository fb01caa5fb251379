"""Crash-resume: a worker SIGKILLed at every step boundary of deploy, redeploy and teardown (and
once in the middle of a step) leaves a run that the next worker finishes, ending exactly where
an undisturbed run ends: nothing duplicated, nothing leaked. Real processes, real git, a portal
database shared by the worker processes (a SQLite file, or in the parity run a database of each
case's own on the MariaDB of DATABASE_URL); the queue is django-q2's ORM broker in that database.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

from environments import demo, git
from environments.models import STEPS_BY_KIND, RunKind
from tests import server_db
from tests.live import ROOT, kill_previews, portal_env

CLAIM_SECONDS = 0.5
WORKER = str(ROOT / "tests" / "crash_worker.py")
EXPECTED = {
    RunKind.DEPLOY: {"status": "ready", "runs": ["succeeded"], "free": 1, "process_groups": 2,
                     "worktrees": 1},
    RunKind.REDEPLOY: {"status": "ready", "runs": ["succeeded"] * 2, "free": 1,
                       "process_groups": 2, "worktrees": 1},
    RunKind.TEARDOWN: {"status": "torn_down", "runs": ["succeeded"] * 2, "free": 2,
                       "process_groups": 0, "worktrees": 0, "leased": [], "urls": []},
}


def boundaries(kind: str) -> list[list[str]]:
    steps = STEPS_BY_KIND[kind]
    points = [["--kill-before", step] for step in steps] + [["--kill-after-last"]]
    return points + ([["--kill-mid-apply"]] if "apply" in steps else [])


CASES = [(kind, kill) for kind in EXPECTED for kill in boundaries(kind)]


class Portal:
    """One portal database and var directory, driven by worker processes."""

    def __init__(self, var: Path, older_commit: str = "", database_url: str = "",
                 **settings: str) -> None:
        # DATABASE_URL passes through as it is (SQLite under var/ when unset) unless given.
        database = {"DATABASE_URL": database_url} if database_url else {}
        self.env = portal_env(var, PORTAL_CLAIM_SECONDS=str(CLAIM_SECONDS), **database,
                              **settings)
        self.older_commit = older_commit

    def call(self, *args: str, killed: bool = False) -> str:
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == (-9 if killed else 0), done.stderr[-3000:]
        return done.stdout

    def prepare(self, kind: str) -> int:
        # A redeploy goes from the older commit of main to its head.
        commit = ["--commit", self.older_commit] if kind == RunKind.REDEPLOY else []
        return int(self.call(WORKER, "prepare", kind, *commit).split()[-1])

    def run(self, env_id: int, *kill: str) -> None:
        self.call(WORKER, "run", str(env_id), *kill, killed=bool(kill))

    def resume(self, env_id: int) -> dict:
        return json.loads(self.call(WORKER, "resume", str(env_id)).splitlines()[-1])


class Template(NamedTuple):
    root: Path
    database: str  # its database on the server; "" when it is the SQLite file under var/


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """A migrated portal with the demo project (main has two commits), a pool of two slots and
    an admin, copied for each case."""
    root = tmp_path_factory.mktemp("crash-template")
    server = server_db.server()
    database, url = server_db.create(server, "crash_template") if server else ("", "")
    portal = Portal(root / "var", database_url=url)
    portal.call("manage.py", "migrate", "-v0")
    portal.call("manage.py", "setup_demo", "--path", str(root / "repo"))
    repo = str(root / "repo")
    (root / "repo" / "banner.txt").write_text("Demo shop — second commit\n")
    git.run("-C", repo, "add", "-A")
    git.run("-C", repo, *demo.IDENTITY, "commit", "--quiet", "-m", "second")
    portal.env.update(PORTAL_POOL_SIZE="2", DJANGO_SUPERUSER_PASSWORD="admin-pw")
    portal.call("manage.py", "pool", "ensure")
    portal.call("manage.py", "createsuperuser", "--noinput", "--username", "admin",
                "--email", "admin@example.com")
    return Template(root, database)


def copy_of(template: Template, var: Path, **settings: str) -> Portal:
    shutil.copytree(template.root / "var", var)
    server = server_db.server()
    url = server_db.copy(server, template.database, "crash") if server else ""
    older = git.run("-C", str(template.root / "repo"), "rev-parse", "main~1").strip()
    return Portal(var, older, database_url=url, **settings)


@pytest.fixture
def portal(template: Template, tmp_path: Path):
    var = tmp_path / "crash-var"  # not "var": that one is the test's own (conftest)
    yield copy_of(template, var)
    kill_previews(var)


@pytest.fixture(scope="module")
def references(template: Template, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Where an undisturbed run of each kind ends."""
    found = {}
    for kind in EXPECTED:
        var = tmp_path_factory.mktemp(f"reference-{kind}") / "var"
        portal = copy_of(template, var)
        try:
            found[kind] = portal.resume(portal.prepare(kind))
        finally:
            kill_previews(var)
        assert {k: found[kind][k] for k in EXPECTED[kind]} == EXPECTED[kind], found[kind]
    return found


def comparable(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "detail"}


@pytest.mark.parametrize(("kind", "kill"), CASES, ids=[f"{k}:{' '.join(x)}" for k, x in CASES])
def test_a_worker_killed_mid_run_is_resumed_to_the_undisturbed_end(
        kind: str, kill: list[str], portal: Portal, references: dict) -> None:
    env_id = portal.prepare(kind)
    portal.run(env_id, *kill)
    time.sleep(CLAIM_SECONDS + 0.2)  # the dead worker's claim runs out

    state = portal.resume(env_id)  # the queued task is redelivered to a fresh worker

    assert comparable(state) == comparable(references[kind]), state["detail"]


def test_a_teardown_during_a_deploy_wins_and_nothing_survives(portal: Portal) -> None:
    env_id = portal.prepare(RunKind.DEPLOY)
    portal.run(env_id, "--kill-before", "rollout")  # processes run, the deploy is unfinished
    portal.call("manage.py", "teardown", str(env_id), "--user", "admin")
    time.sleep(CLAIM_SECONDS + 0.2)

    state = portal.resume(env_id)

    assert state["status"] == "torn_down"
    assert state["runs"] == ["cancelled", "succeeded"]
    assert (state["process_groups"], state["worktrees"], state["free"]) == (0, 0, 2)
