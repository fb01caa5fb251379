"""The demo project: examples/demo turned into a git repository with a few branches."""

import shlex
import shutil
import sys
from pathlib import Path

from django.conf import settings

from environments import git
from environments.models import Component, Project

SOURCE = Path(settings.BASE_DIR) / "examples" / "demo"
LEAK = Path(settings.BASE_DIR) / "examples" / "leak"
UNICODE_BRANCH = "feature/ünïcode-✨"
# branch -> files written on top of main
BRANCHES: dict[str, dict[str, str]] = {
    "feature/checkout": {"banner.txt": "Demo shop — new checkout\n"},
    UNICODE_BRANCH: {"banner.txt": "Demo shop — ünïcode ✨ edition\n"},
    "broken/crash-on-start": {"crash-on-start": "components of this branch exit at start\n"},
    "broken/login": {"login-broken": "login refuses the right password on this branch\n"},
    "slow/warm-up": {"warm-up-seconds": "4\n"},
}
# Branches that reach for what branch code must not see (the portal's environment, its database,
# a service-account token): the sandbox tests launch them; `make run`'s demo does not offer them.
LEAK_BRANCHES: dict[str, dict[str, str]] = {
    "leak/portal-secrets": {"smoke/test_leak.py": (LEAK / "test_leak.py").read_text()},
    "leak/seed-attach": {"seed.sql": (LEAK / "seed.sql").read_text()},
}
# What the portal checks after each deploy (environments/smoke/config.py).
SMOKE = {
    "login": [{"component": "api", "path": "/login", "status": 200, "contains": "token",
               "json": {"username": "demo", "password": "demo-password"}}],
    "database": [{"component": "api", "path": "/items", "json": {"name": "{marker}"},
                  "status": 201, "table": "items", "column": "name"}],
    "integrations": [{"name": "file queue", "component": "api", "path": "/integrations/queue",
                      "json": {"message": "{marker}"}, "contains": "{marker}"}],
    "components": [{"name": "web to api", "component": "web", "path": "/upstream",
                    "contains": '"role": "api"'}],
    "tests": "smoke",
}
IDENTITY = ("-c", "user.name=Preview Portal", "-c", "user.email=portal@example.invalid")


def build_repository(path: Path, branches: dict[str, dict[str, str]] = BRANCHES) -> Path:
    """Create the demo repository at `path` unless it is there already."""
    if (path / ".git").exists():
        return path
    shutil.copytree(SOURCE, path, ignore=shutil.ignore_patterns("__pycache__"))
    here = str(path)
    git.run("init", "--quiet", "--initial-branch=main", here)
    git.run("-C", here, "add", "-A")
    git.run("-C", here, *IDENTITY, "commit", "--quiet", "-m", "Demo shop")
    for branch, files in branches.items():
        git.run("-C", here, "checkout", "--quiet", "-b", branch, "main")
        for name, content in files.items():
            (path / name).write_text(content)
        git.run("-C", here, "add", "-A")
        git.run("-C", here, *IDENTITY, "commit", "--quiet", "-m", f"Demo change on {branch}")
    git.run("-C", here, "checkout", "--quiet", "main")
    return path


def register(repository: Path, name: str = "demo") -> Project:
    """Register the demo once: an admin's later edits (its images, its smoke checks) stand when
    `make run` starts again."""
    project, created = Project.objects.get_or_create(
        name=name,
        defaults={
            "repository": str(repository), "github_repository": "preview-portal/demo",
            "seed_sql": "seed.sql", "smoke": SMOKE,
        },
    )
    if not created:
        return project
    command = f"{shlex.quote(sys.executable)} app.py"
    for position, role in enumerate(("web", "api")):
        # One image serves both roles (ROLE says which): a test cluster's registry holds it.
        image = settings.PORTAL_DEMO_IMAGE or f"ghcr.io/preview-portal/demo-{role}"
        Component.objects.create(
            project=project, name=role, position=position, port=8080,
            health_paths=["/healthz"], env_vars={"ROLE": role}, start_command=command,
            image=f"{image}:{{commit}}",
        )
    return project
