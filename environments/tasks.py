"""django-q2 entry points: primary keys in, the rest looked up (delivery is at-least-once)."""

import os
import socket
import uuid
from contextlib import suppress

from django.utils import timezone

from environments import (
    datasets,
    dbpool,
    lifecycle,
    pipeline,
    reconciler,
    services,
    taskqueue,
)
from environments.backends import BackendError, get
from environments.github import statuses
from environments.models import DbSlot, Interface, SlotState
from portal import logs


def execute_run(run_id: int) -> None:
    worker = lifecycle.worker_id(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
    run = lifecycle.claim_run(run_id, worker)
    if run is not None:
        with logs.context(environment=run.environment_id, run=run.pk):
            pipeline.execute(run, worker)
        # A warm slot it took is replaced now, off the launch path (its lease_db is done).
        datasets.warm()


def resume_orphaned_runs(**signal: object) -> None:
    """As each worker starts: what killed workers of this machine left half-done goes on now,
    not when their claims expire."""
    for run_id in lifecycle.release_orphaned_claims(socket.gethostname(), _alive):
        taskqueue.enqueue_run(run_id)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as someone else's process
        pass
    return True


def reset_slot(slot_id: int) -> None:
    slot = DbSlot.objects.filter(pk=slot_id, state=SlotState.RESETTING).first()
    if slot is None:
        return
    try:
        secret = get("pool").reset(slot.name)
    except BackendError as exc:
        dbpool.finish_slot_reset(slot, error=f"reset failed: {exc}")
        return
    dbpool.finish_slot_reset(slot, secret)
    datasets.warm()  # the freed slot, for whichever project lacks warm slots most


def retry_failed_resets() -> None:
    """Every minute: also warms what the last pass could not (a slot was busy)."""
    dbpool.retry_failed_resets()
    datasets.warm()


def prepare_dataset(version_id: int) -> None:
    datasets.prepare(version_id)


def restore_slot(slot_id: int) -> None:
    datasets.restore_slot(slot_id)


def expire_environments() -> None:
    """Warn what expires soon, tear down what expired (a django-q2 schedule, every minute)."""
    now = timezone.now()
    notifier = get("notify")
    for environment in services.expiring_soon(now):
        # The banner on its page warns all the same.
        with suppress(BackendError):
            notifier.send(pipeline.expiry_notice(environment))
        with suppress(BackendError):
            statuses.warn_expiry(environment)
    services.expire(now)


def reconcile() -> None:
    """Fix what drifted from what the portal believes (a django-q2 schedule, every minute)."""
    reconciler.run_pass(dry_run=False, actor=None, interface=Interface.SYSTEM)
