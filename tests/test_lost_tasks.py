"""A run nobody will start: a launch whose task the queue cannot take is refused before anything
is made, and a run whose task never reached the queue is queued by the reconciler."""

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.conf import Conf

from environments import reconciler, services, taskqueue
from environments.models import EnvironmentStatus, Interface, Run, RunStatus
from tests.support.live import ROOT, portal_env

pytestmark = pytest.mark.django_db(transaction=True)


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_launch_from_the_shell_without_a_secret_key_says_so_and_creates_nothing(
        tmp_path: Path) -> None:
    development = portal_env(tmp_path / "var", DJANGO_SUPERUSER_PASSWORD="admin-pw")
    for args in (("migrate", "-v0"), ("setup_demo", "--path", str(tmp_path / "repo")),
                 ("createsuperuser", "--noinput", "--username", "admin",
                  "--email", "admin@example.com")):
        assert manage(development, *args).returncode == 0
    production = {k: v for k, v in development.items() if k != "PORTAL_DEBUG"}

    launched = manage(production, "launch", "demo", "main", "--user", "admin")

    counted = manage(development, "shell", "-c", "from environments.models import Environment, "
                     "Run; print(Environment.objects.count(), Run.objects.count())")
    assert launched.returncode == 1, launched.stderr
    assert "task queue cannot take runs" in launched.stderr
    assert "PORTAL_SECRET_KEY" in launched.stderr and "Traceback" not in launched.stderr
    assert counted.stdout.split()[-2:] == ["0", "0"]


def pass_findings() -> list[dict]:
    done = reconciler.run_pass(dry_run=False, actor=None, interface=Interface.SYSTEM)
    return [f for f in done.findings if f["kind"] == reconciler.NO_TASK]


def age(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(
        created_at=timezone.now() - reconciler.TASK_LOST_AFTER - timedelta(seconds=1))


def test_a_run_whose_task_never_reached_the_queue_is_deployed_after_the_next_pass(
        demo_project, pool_of, developer, monkeypatch) -> None:
    pool_of(1)
    enqueue = taskqueue.enqueue_run
    monkeypatch.setattr(taskqueue, "enqueue_run", lambda run_id: None)  # the task is lost
    environment = services.launch(demo_project, "main", actor=developer, interface=Interface.CLI)
    monkeypatch.setattr(taskqueue, "enqueue_run", enqueue)
    run = environment.runs.get()

    too_young = pass_findings()  # its task may still be on its way
    age(run)
    found = pass_findings()

    environment.refresh_from_db()
    assert too_young == []
    assert [f["action"] for f in found] == ["queue it"]
    assert environment.status == EnvironmentStatus.READY
    assert environment.runs.get().status == RunStatus.SUCCEEDED


def test_a_run_whose_task_waits_in_the_queue_is_left_to_it(
        demo_project, pool_of, developer, monkeypatch) -> None:
    pool_of(1)
    monkeypatch.setattr(Conf, "SYNC", False)  # the task goes to the broker, no worker takes it
    environment = services.launch(demo_project, "main", actor=developer,
                                  interface=Interface.CLI)
    age(environment.runs.get())

    assert pass_findings() == []
    assert environment.runs.get().status == RunStatus.PENDING
