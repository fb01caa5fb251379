"""What the portal hands to the task queue (django-q2): a run to carry out, a slot to reset.
Callers go through this module's attributes, so a test that holds runs back patches one name."""

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from environments.refused import Refused


def check_queue() -> None:
    """Refused when the task queue cannot take a run: its task would fail after the commit,
    leaving an environment that stays queued with nobody to deploy it."""
    from django_q.signing import SignedPackage

    try:
        SignedPackage.dumps({"check": "queue"})
    except ImproperlyConfigured as exc:  # tasks are signed with the secret key
        raise Refused(f"the task queue cannot take runs ({exc}): set PORTAL_SECRET_KEY "
                      "(or PORTAL_DEBUG=1 in development)", 503) from exc


def enqueue_run(run_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("environments.tasks.execute_run", run_id, task_name=f"run-{run_id}")
    )


def enqueue_slot_reset(slot_id: int) -> None:
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("environments.tasks.reset_slot", slot_id, task_name=f"slot-{slot_id}")
    )
