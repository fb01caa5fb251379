"""A run's lifecycle: the status moves a run and its environment may make, one table each (as
NetBox's Job keeps them), and the worker's bookkeeping that makes them. Nothing else writes a
run's or an environment's status: a move the tables do not hold is a bug, and raises.

Locks are taken environment first, then run, everywhere, so a teardown asked for while a run
ends cannot deadlock with it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from environments import taskqueue
from environments.models import Environment, EnvironmentStatus, Run, RunKind, RunStatus

_E = EnvironmentStatus
_FROM_ANY_LIVE = frozenset({_E.PROVISIONING, _E.FAILED, _E.TEARING_DOWN})
# Where each status may go. A status may stay itself where a step or run may do its part twice
# (a redelivered task, a resumed run).
ENVIRONMENT_MOVES: dict[str, frozenset[str]] = {
    _E.QUEUED: _FROM_ANY_LIVE,
    _E.PROVISIONING: _FROM_ANY_LIVE | {_E.VERIFYING},
    _E.VERIFYING: _FROM_ANY_LIVE | {_E.VERIFYING, _E.READY, _E.DEGRADED},
    # A smoke run moves a ready environment to degraded and back; a redeploy starts over.
    _E.READY: _FROM_ANY_LIVE | {_E.READY, _E.DEGRADED},
    _E.DEGRADED: _FROM_ANY_LIVE | {_E.READY, _E.DEGRADED},
    # A smoke run asked for before a redeploy that then failed still says how the app answers.
    _E.FAILED: _FROM_ANY_LIVE | {_E.READY, _E.DEGRADED},
    # A failed teardown leaves it failed, to be torn down again.
    _E.TEARING_DOWN: frozenset({_E.TEARING_DOWN, _E.TORN_DOWN, _E.FAILED}),
    _E.TORN_DOWN: frozenset(),
}
# Once a teardown is asked for, only the teardown moves the environment: the moves of a run it
# overtook are dropped (not errors: the run is being cancelled).
_TEARDOWN_OWNS = frozenset({_E.TEARING_DOWN, _E.TORN_DOWN})

_R = RunStatus
RUN_MOVES: dict[str, frozenset[str]] = {
    _R.PENDING: frozenset({_R.RUNNING, _R.CANCELLED}),
    _R.WAITING: frozenset({_R.RUNNING, _R.CANCELLED}),
    # Running again: another worker takes over a run whose claim expired. Waiting: parked
    # until a DB slot frees.
    _R.RUNNING: frozenset({_R.RUNNING, _R.WAITING, _R.SUCCEEDED, _R.FAILED, _R.CANCELLED}),
    _R.SUCCEEDED: frozenset(),
    _R.FAILED: frozenset(),
    _R.CANCELLED: frozenset(),
}


class IllegalMove(Exception):
    """A status move the lifecycle does not allow; nothing was written."""


def _sources(moves: dict[str, frozenset[str]], to: str) -> frozenset[str]:
    return frozenset(status for status, targets in moves.items() if to in targets)


def _check(moves: dict[str, frozenset[str]], what: str, current: str, to: str) -> None:
    if to not in moves[current]:
        allowed = ", ".join(sorted(moves[current])) or "nowhere: it is final"
        raise IllegalMove(f"{what} cannot go from {current} to {to} (from {current}: {allowed})")


# The environment's moves.

def start_provisioning(environment: Environment) -> bool:
    return _move_environment(environment, _E.PROVISIONING)


def start_verifying(environment: Environment, urls: dict[str, str]) -> bool:
    return _move_environment(environment, _E.VERIFYING, urls=urls)


def start_teardown(environment: Environment) -> None:
    """A teardown takes the environment over (a launch asked for during an earlier one is
    dropped: the newest ask wins)."""
    _move_environment(environment, _E.TEARING_DOWN, by_teardown=True, relaunch=None)


def _move_environment(environment: Environment, to: str, detail: str = "", *,
                      by_teardown: bool = False, **fields: Any) -> bool:
    """False when a teardown has taken the environment over and this is not it."""
    with transaction.atomic():
        current = _locked_status(environment.pk)
        if current in _TEARDOWN_OWNS and not by_teardown:
            return False
        _check(ENVIRONMENT_MOVES, f"environment {environment.pk}", current, to)
        Environment.objects.filter(pk=environment.pk).update(
            status=to, status_detail=detail, updated_at=timezone.now(), **fields)
    environment.status, environment.status_detail = to, detail
    for name, value in fields.items():
        setattr(environment, name, value)
    return True


def _locked_status(environment_id: int) -> str:
    return Environment.objects.select_for_update().values_list("status", flat=True).get(
        pk=environment_id)


# The runs' moves. Claims: a run delivered twice, or to two workers, runs once.

def worker_id(host: str, pid: int, nonce: str) -> str:
    return f"{host}:{pid}:{nonce}"


def claim_run(run_id: int, worker: str) -> Run | None:
    """The run, now `worker`'s; None when it is not this worker's to run now: it ended, another
    worker holds it, or a run of its environment is ahead of it."""
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.filter(pk=run_id).select_related("environment").first()
        if run is None:
            return None
        _locked_status(run.environment_id)
        ahead = Run.objects.open().filter(environment_id=run.environment_id).exclude(pk=run_id)
        ahead = ahead.filter(Q(pk__lt=run_id) | Q(status=_R.RUNNING))
        if ahead.exclude(status=_R.RUNNING, claim_expires_at__lt=now).exists():
            return None  # Runs of one environment go one at a time, oldest first.
        claimed = Run.objects.filter(
            Q(status__in=_sources(RUN_MOVES, _R.RUNNING) - {_R.RUNNING})
            | Q(status=_R.RUNNING, claim_expires_at__lt=now),
            pk=run_id,
        ).update(
            status=_R.RUNNING, claimed_by=worker,
            claim_expires_at=now + timedelta(seconds=settings.PORTAL_CLAIM_SECONDS),
            started_at=run.started_at or now,
        )
    return Run.objects.select_related("environment__project").get(pk=run_id) if claimed else None


def keep_claim(run: Run, worker: str) -> bool:
    """Extend the claim; False when another worker has taken the run over."""
    return bool(
        Run.objects.filter(pk=run.pk, claimed_by=worker, status=_R.RUNNING).update(
            claim_expires_at=timezone.now() + timedelta(seconds=settings.PORTAL_CLAIM_SECONDS)
        )
    )


def release_orphaned_claims(host: str, alive: Callable[[int], bool]) -> list[int]:
    """Runs claimed by a worker of `host` whose process is gone (the portal was killed): nobody
    renews their claim, and waiting for it to expire delays the resume by minutes. A claim from
    another host, or from a process that may still be running, waits for its expiry as before.
    Returns the released runs, to be queued again."""
    released = []
    running = Run.objects.filter(status=_R.RUNNING, claimed_by__startswith=f"{host}:")
    for pk, claimed_by in running.values_list("pk", "claimed_by"):
        _, pid, _ = claimed_by.split(":", 2)
        if pid.isdigit() and not alive(int(pid)) and Run.objects.filter(
                pk=pk, status=_R.RUNNING, claimed_by=claimed_by,
        ).update(claim_expires_at=timezone.now() - timedelta(seconds=1)):
            released.append(pk)
    return released


def park_run(run: Run) -> None:
    """The run waits for a DB slot; it is picked up again when one frees."""
    with transaction.atomic():
        _locked_status(run.environment_id)
        _move_run(run, _R.WAITING, claimed_by="", claim_expires_at=None)


def cancel_for_teardown(environment: Environment) -> None:
    """Runs that have not started are cancelled; a running one is asked to stop at its next
    step (it ends itself, cancelled)."""
    runs = environment.runs.open().exclude(kind=RunKind.TEARDOWN)
    runs.filter(status__in=_sources(RUN_MOVES, _R.CANCELLED) - {_R.RUNNING}).update(
        status=_R.CANCELLED, finished_at=timezone.now())
    runs.filter(status=_R.RUNNING).update(cancel_requested=True)


@dataclass(frozen=True)
class Ending:
    """Where a run leaves its environment: written with the run's end, in one transaction, so
    nobody sees a ready or torn-down environment whose run is still open (or the reverse)."""

    status: str
    detail: str = ""
    fields: dict[str, Any] = field(default_factory=dict)


def finish_run(run: Run, status: str, error: str = "", ending: Ending | None = None) -> None:
    with transaction.atomic():
        _locked_status(run.environment_id)
        _move_run(run, status, error=error, finished_at=timezone.now(), claim_expires_at=None)
        if ending is not None:
            _move_environment(run.environment, ending.status, ending.detail,
                              by_teardown=run.kind == RunKind.TEARDOWN, **ending.fields)
    start_next_run(run.environment_id)


def _move_run(run: Run, to: str, **fields: Any) -> None:
    """Inside a transaction holding the environment's lock."""
    current = Run.objects.select_for_update().values_list("status", flat=True).get(pk=run.pk)
    _check(RUN_MOVES, f"run {run.pk}", current, to)
    Run.objects.filter(pk=run.pk).update(status=to, **fields)
    run.status = to


def start_next_run(environment_id: int) -> None:
    following = Run.objects.filter(environment_id=environment_id, status=_R.PENDING)
    nxt = following.order_by("id").first()
    if nxt:
        taskqueue.enqueue_run(nxt.pk)
