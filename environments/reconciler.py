"""Level-triggered reconciliation, like a Kubernetes controller: compare what the portal
believes with what exists, and fix each difference (or only list it, dry run).

Each `find_*` function looks for one kind of finding and returns them with their fix; a fix is
idempotent and goes through services, so a pass that races a worker (or another pass) ends where
one would have. The queries of a pass do not grow with the number of environments or runs,
except for the reads of torn-down environments' hosts (one query for all of them)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.brokers.orm import ORM
from django_q.signing import SignedPackage

from environments import audit, dbpool, services, taskqueue
from environments.audit import User
from environments.backends import BackendError, get
from environments.models import (
    RUN_OPEN,
    DbSlot,
    Environment,
    EnvironmentStatus,
    ReconcilePass,
    Run,
    RunStatus,
    SlotState,
)
from environments.refused import Refused

logger = logging.getLogger("preview_portal.reconciler")
Log = Callable[[str], None]
# Passes run every minute: older ones go (their fixes stay in the audit log).
KEEP_PASSES = timedelta(days=7)
# A run's task reaches a worker within seconds unless the workers are all busy: one a pass
# finds missing from the queue after this long was lost (queuing it twice is harmless anyway:
# claim_run runs it once).
TASK_LOST_AFTER = timedelta(minutes=2)

# The kinds of finding, as the Health page and the audit log name them.
ORPHAN = "orphan"  # runtime objects / processes / worktrees of no live environment
SLOT = "slot_of_torn_down"
RESET = "reset_lost"
DNS = "dns_of_torn_down"
CLAIM = "claim_expired"
WAITING = "waiting_with_free_slot"
RELAUNCH = "relaunch_lost"
NO_TASK = "run_without_task"
UNREADABLE = "unreadable"  # a backend could not be read: only reported


@dataclass
class Finding:
    kind: str
    subject: str
    action: str  # what the fix does; "failed: ..." once it failed
    fix: Callable[[], object] | None = field(repr=False)  # None: only a report
    environment: Environment | None = None
    detail: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"kind": self.kind, "subject": self.subject, "action": self.action,
                "detail": self.detail}


def run_pass(*, dry_run: bool, actor: User, interface: str,
             log: Log = logger.info) -> ReconcilePass:
    """Find everything, fix it unless `dry_run`, and record the pass."""
    started = timezone.now()
    findings: list[Finding] = []
    for find in FINDERS:
        try:
            findings += find(started)
        except BackendError as exc:  # one backend down must not hide the other findings
            log(f"{find.__name__}: {exc}")
            findings.append(Finding(UNREADABLE, find.__name__, f"failed: {exc}", fix=None))
    for finding in findings:
        log(f"{finding.kind} {finding.subject}: {finding.action}")
        for line in finding.detail:
            log(f"  {line}")
        if not dry_run and finding.fix is not None:
            _fix(finding, finding.fix, actor, interface)
    ReconcilePass.objects.filter(started_at__lt=started - KEEP_PASSES).delete()
    return ReconcilePass.objects.create(
        started_at=started, finished_at=timezone.now(), dry_run=dry_run, interface=interface,
        findings=[finding.as_json() for finding in findings],
    )


def _fix(finding: Finding, fix: Callable[[], object], actor: User,
         interface: str) -> None:
    try:
        fix()
    except BackendError as exc:
        finding.action = f"failed: {exc}"
        return
    audit.record(actor, interface, "reconcile", finding.environment, kind=finding.kind,
                 subject=finding.subject, fix=finding.action, detail=finding.detail)


# The kinds of finding.

def find_runtime_orphans(now: datetime) -> list[Finding]:
    runtime = get("runtime")
    held = runtime.inventory()
    # Read after the inventory: an environment launched in between counts as live.
    live = set(Environment.objects.active().values_list("env_key", flat=True))
    return [
        Finding(ORPHAN, key, "delete it from the runtime", detail=things,
                fix=partial(runtime.delete, key, logger.info))
        for key, things in sorted(held.items()) if key not in live
    ]


def find_slots_of_torn_down(now: datetime) -> list[Finding]:
    slots = DbSlot.objects.filter(
        state=SlotState.LEASED, environment__status=EnvironmentStatus.TORN_DOWN
    ).select_related("environment__project")
    return [
        Finding(SLOT, f"{slot.name} leased to {slot.environment}", "release it and reset it",
                environment=slot.environment, fix=partial(dbpool.release_slot, slot.environment))
        for slot in slots
    ]


def find_lost_resets(now: datetime) -> list[Finding]:
    """A reset with no error yet that should long be done: its task was lost (a failed one has
    an error and is retried by its own schedule)."""
    since = now - timedelta(minutes=settings.PORTAL_RESET_LOST_MINUTES)
    slots = DbSlot.objects.filter(state=SlotState.RESETTING, error="", resetting_since__lt=since)
    return [
        Finding(RESET, f"{slot.name} resetting since {slot.resetting_since:%Y-%m-%d %H:%M} UTC",
                "ask for its reset again",
                fix=partial(dbpool.ask_reset_again, slot))
        for slot in slots
    ]


def find_dns_of_torn_down(now: datetime) -> list[Finding]:
    """Records of torn-down environments' hosts. A record the portal cannot tie to one (made by
    hand, or the portal's own) is left alone; so is one a live environment uses again."""
    dns = get("dns")
    held = dns.records()
    if not held:  # None: the backend cannot list its records
        return []
    dead = _hosts(Environment.objects.filter(status=EnvironmentStatus.TORN_DOWN))
    live = _hosts(Environment.objects.active())
    return [
        Finding(DNS, host, "delete the record", environment=dead[host],
                fix=partial(dns.delete, [host], logger.info))
        for host in held if host in dead and host not in live
    ]


def _hosts(environments: QuerySet[Environment]) -> dict[str, Environment]:
    """Each exposed host of the environments → the environment (the newest wins)."""
    hosts: dict[str, Environment] = {}
    for environment in environments.prefetch_related("project__components").order_by("id"):
        for component in environment.project.components.all():
            if component.exposed:
                hosts[environment.host(component.name)] = environment
    return hosts


def find_expired_claims(now: datetime) -> list[Finding]:
    """Runs whose worker stopped heart-beating: the next worker resumes them from their first
    unfinished step (claim_run takes over an expired claim)."""
    runs = Run.objects.filter(
        status=RunStatus.RUNNING, claim_expires_at__lt=now
    ).select_related("environment__project")
    return [
        Finding(CLAIM, f"{run.kind} run {run.pk} of {run.environment}, "
                       f"claimed by {run.claimed_by or '?'}",
                "resume it on a worker", environment=run.environment,
                fix=partial(taskqueue.enqueue_run, run.pk))
        for run in runs
    ]


def find_waiting_with_free_slots(now: datetime) -> list[Finding]:
    """Runs waiting for a DB slot while one is free: the wake-up when it freed was lost."""
    return [
        Finding(WAITING, f"{run.kind} run {run.pk} of {run.environment}", "wake it",
                environment=run.environment, fix=partial(taskqueue.enqueue_run, run.pk))
        for run in dbpool.runs_to_wake()
    ]


def find_runs_without_task(now: datetime) -> list[Finding]:
    """Runs next in line for their environment that no task in the queue will start: the task
    was never handed over (the queue refused it after the launch's commit) or was lost. Only
    runs older than TASK_LOST_AFTER: until then their task may be on its way to a worker."""
    ahead = Run.objects.filter(environment=OuterRef("environment"), status__in=RUN_OPEN).filter(
        Q(pk__lt=OuterRef("pk")) | Q(status=RunStatus.RUNNING))
    runs = list(Run.objects.filter(
        status=RunStatus.PENDING, created_at__lt=now - TASK_LOST_AFTER,
    ).exclude(Exists(ahead)).select_related("environment__project"))
    queued = _queued_runs() if runs else set()
    return [
        Finding(NO_TASK, f"{run.kind} run {run.pk} of {run.environment}, pending since "
                         f"{run.created_at:%Y-%m-%d %H:%M} UTC",
                "queue it", environment=run.environment,
                fix=partial(taskqueue.enqueue_run, run.pk))
        for run in runs if run.pk not in queued
    ]


def _queued_runs() -> set[int]:
    """The runs the broker holds a task for (a task a worker has taken counts until it is
    done: the ORM broker keeps it, locked, until then)."""
    broker = get_broker()
    if isinstance(broker, ORM):
        packs = broker.connection.filter(key=broker.list_key).values_list("payload", flat=True)
    else:  # Redis, the portal's other broker
        packs = broker.connection.lrange(broker.list_key, 0, -1)
    names = (SignedPackage.loads(pack).get("name", "") for pack in packs)
    return {int(name[4:]) for name in names if name.startswith("run-") and name[4:].isdigit()}


def find_lost_relaunches(now: datetime) -> list[Finding]:
    """A launch asked for during a teardown that ended without carrying it out (its worker died
    between the end of the run and the launch)."""
    environments = Environment.objects.filter(
        status=EnvironmentStatus.TORN_DOWN, relaunch__isnull=False,
    ).exclude(runs__status__in=RUN_OPEN).select_related("project")
    return [
        Finding(RELAUNCH, str(environment), "launch it again, as asked during its teardown",
                environment=environment,
                fix=partial(_relaunch, environment))
        for environment in environments
    ]


def _relaunch(environment: Environment) -> None:
    try:
        services.launch_asked_during_teardown(environment)
    except Refused as exc:  # e.g. the branch is gone: it is not asked for any more
        raise BackendError(f"the launch was refused: {exc}") from exc


FINDERS: tuple[Callable[[datetime], list[Finding]], ...] = (
    find_runtime_orphans,
    find_slots_of_torn_down,
    find_lost_resets,
    find_dns_of_torn_down,
    find_expired_claims,
    find_waiting_with_free_slots,
    find_lost_relaunches,
    find_runs_without_task,
)
