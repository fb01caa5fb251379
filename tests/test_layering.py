"""Who may import whom: views reach backends only through the registry (backends.get), never a
concrete implementation or the API module; the settings offer exactly the registry's backends."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from environments.implementations import IMPLEMENTATIONS
from tests.support.live import ROOT

CONCRETE = tuple(f"environments.backends.{concern}." for concern in IMPLEMENTATIONS)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_views_import_neither_the_api_nor_a_concrete_backend() -> None:
    imported = imported_modules(ROOT / "environments" / "views.py")

    assert "environments.api" not in imported
    assert not [name for name in imported if name.startswith(CONCRETE)]


@pytest.mark.parametrize("concern", sorted(IMPLEMENTATIONS))
def test_a_backend_the_registry_lacks_is_refused_naming_the_registered_ones(concern: str) -> None:
    setting, choices = IMPLEMENTATIONS[concern]
    env = {"PATH": "/usr/bin:/bin", "PORTAL_DEBUG": "1", setting: "nonesuch"}

    started = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT,
                             env=env | {"DJANGO_SETTINGS_MODULE": "portal.settings"},
                             capture_output=True, text=True, timeout=60)

    assert started.returncode == 1
    assert f"{setting} must be one of {', '.join(choices)}, not 'nonesuch'" in started.stderr


def test_the_webhook_calls_services_and_never_github_itself() -> None:
    """What GitHub is asked or told on a delivery's behalf is the commands' and statuses'."""
    imported = imported_modules(ROOT / "environments" / "github" / "webhooks.py")

    assert "environments.github.client" not in imported
    assert "environments.services" in imported


@pytest.mark.parametrize("module", ["dbpool", "lifecycle", "taskqueue", "datasets"])
def test_the_portals_plumbing_does_not_import_services(module: str) -> None:
    """services.py is the user's actions; queueing, the pool and the run lifecycle sit below."""
    imported = imported_modules(ROOT / "environments" / f"{module}.py")

    assert "environments.services" not in imported
