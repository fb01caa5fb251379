"""A worker that starts takes over at once the runs of workers of its machine that were killed:
their claims would otherwise hold the runs until they expire (tasks.resume_orphaned_runs)."""

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from environments import lifecycle, taskqueue, tasks
from environments.models import Run, RunKind, RunStatus
from tests.support.api_client import ready_environment


@pytest.fixture
def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def claimed_run(project, branch: str, owner, claimed_by: str) -> Run:
    environment = ready_environment(project, branch, owner)
    return Run.objects.create(
        environment=environment, kind=RunKind.REDEPLOY, status=RunStatus.RUNNING,
        claimed_by=claimed_by, claim_expires_at=timezone.now() + timedelta(minutes=2),
        started_at=timezone.now())


def test_runs_of_killed_workers_of_this_machine_are_queued_again_at_once(
        demo_project, pool_of, developer, dead_pid, monkeypatch) -> None:
    queued: list[int] = []
    monkeypatch.setattr(taskqueue, "enqueue_run", queued.append)
    pool_of(3)
    host = socket.gethostname()
    orphan = claimed_run(demo_project, "main", developer, f"{host}:{dead_pid}:a1")
    alive = claimed_run(demo_project, "feature/checkout", developer, f"{host}:{os.getpid()}:b2")
    elsewhere = claimed_run(demo_project, "slow/warm-up", developer, f"other-host:{dead_pid}:c3")

    tasks.resume_orphaned_runs(sender="django_q", proc_name="Process-1")

    assert queued == [orphan.pk]
    assert lifecycle.claim_run(orphan.pk, "new-worker") is not None
    assert lifecycle.claim_run(alive.pk, "new-worker") is None  # its worker may still finish it
    assert lifecycle.claim_run(elsewhere.pk, "new-worker") is None  # can't tell: wait for expiry
