"""The crash-resume harness (tests/test_crash_resume*.py): portals made of worker processes
(tests/support/crash_worker.py) sharing a database, each case a copy of one prepared template."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from environments import demo, git
from environments.models import STEPS_BY_KIND, RunKind
from tests.support import server_db
from tests.support.live import ROOT, portal_env

CLAIM_SECONDS = 0.5
WORKER = str(ROOT / "tests" / "support" / "crash_worker.py")


def boundaries(kind: str) -> list[list[str]]:
    steps = STEPS_BY_KIND[kind]
    points = [["--kill-before", step] for step in steps] + [["--kill-after-last"]]
    return points + ([["--kill-mid-apply"]] if "apply" in steps else [])


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

    def prepare(self, kind: str, *kill: str) -> int:
        """The environment's id; given a kill point, its run of KIND was started by a worker
        that was SIGKILLed there."""
        # A redeploy goes from the older commit of main to its head.
        commit = ["--commit", self.older_commit] if kind == RunKind.REDEPLOY else []
        out = self.call(WORKER, "prepare", kind, *commit, *kill, killed=bool(kill))
        return int(re.search(r"^environment (\d+)$", out, re.MULTILINE).group(1))

    def resume(self, env_id: int) -> dict:
        return json.loads(self.call(WORKER, "resume", str(env_id)).splitlines()[-1])


class Template(NamedTuple):
    root: Path
    database: str  # its database on the server; "" when it is the SQLite file under var/

    def as_json(self) -> dict[str, str]:
        return {"root": str(self.root), "database": self.database}

    @classmethod
    def from_json(cls, found: dict[str, str]) -> "Template":
        return cls(Path(found["root"]), found["database"])


def build_template(root: Path) -> Template:
    """A migrated portal with the demo project (main has two commits), a pool of two slots and
    an admin, copied for each case."""
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


def comparable(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "detail"}
