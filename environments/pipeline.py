"""The steps of a run. Each step looks at what exists and does only what is missing, so a step
run twice (a redelivered task, a resumed run) ends where one run would have."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from environments import git, naming, probes, services
from environments.backends import BackendError, get
from environments.backends.notify import Notice
from environments.backends.runtime import ComponentSpec, Target
from environments.models import (
    DbSlot,
    Environment,
    EnvironmentStatus,
    LogLine,
    Run,
    RunKind,
    RunStatus,
    RunStep,
    SmokeAttempt,
    StepStatus,
)

logger = logging.getLogger("preview_portal.pipeline")


class PoolFull(Exception):
    """No DB slot is free: the run waits, the environment is queued."""


class LostClaim(Exception):
    """Another worker took the run over (ours was presumed dead)."""


@dataclass
class Context:
    run: Run
    step: RunStep

    @property
    def environment(self) -> Environment:
        return self.run.environment

    def log(self, text: str) -> None:
        LogLine.objects.create(step=self.step, text=text)
        logger.info("env=%s run=%s step=%s %s", self.environment.pk, self.run.pk,
                    self.step.name, text)

    @cached_property
    def target(self) -> Target:
        return target_for(self.environment, self.run.commit or self.environment.commit)


def target_for(environment: Environment, commit: str) -> Target:
    slot = environment.slot
    if slot is None:
        raise BackendError("the environment holds no DB slot")
    database = services.slot_connection(slot)
    try:
        components = tuple(
            ComponentSpec(
                name=c.name, image=naming.image(c.image, commit, environment.branch),
                port=c.port, health_paths=tuple(c.health_paths),
                start_command=c.start_command, exposed=c.exposed, env=dict(c.env_vars),
                host=naming.host(environment.branch, c.name, settings.PORTAL_NAMING,
                                 settings.PORTAL_BASE_DOMAIN),
            )
            for c in environment.project.components.all()
        )
    except ValueError as exc:  # a project's image template: fixing it is an admin's job
        raise BackendError(str(exc)) from exc
    preview = {
        "PREVIEW_PROJECT": environment.project.name,
        "PREVIEW_BRANCH": environment.branch,
        "PREVIEW_COMMIT": commit,
        "PREVIEW_ENV_KEY": environment.env_key,
        "PREVIEW_DB_SLOT": slot.name,
    }
    return Target(
        env_key=environment.env_key, project=environment.project.name,
        repository=environment.project.repository, branch=environment.branch, commit=commit,
        components=components, env=preview, secret_env=database.environ(),
        base_manifests=environment.project.base_manifests,
    )


def exposed_hosts(environment: Environment) -> list[str]:
    return [
        naming.host(environment.branch, c.name, settings.PORTAL_NAMING,
                    settings.PORTAL_BASE_DOMAIN)
        for c in environment.project.components.filter(exposed=True)
    ]


def portal_url(environment: Environment) -> str:
    return settings.PORTAL_BASE_URL + reverse("environment", args=[environment.pk])


# The steps.

def lease_db(ctx: Context) -> None:
    slot = services.lease_slot(ctx.environment)
    if slot is None:
        raise PoolFull
    database = services.slot_connection(slot)
    try:
        get("pool").check(slot.name, database.password)
    except BackendError:
        services.unlease_slot(slot)  # nothing was written: the slot stays usable
        raise
    ctx.log(f"DB slot {slot.name} is this environment's ({database.public()['host'] or 'file'})")
    seed_path = ctx.environment.project.seed_sql
    if seed_path and not slot.seeded:
        _seed(ctx, slot, database.password, seed_path)
    services.set_status(ctx.environment, EnvironmentStatus.PROVISIONING)


def _seed(ctx: Context, slot: DbSlot, secret: str, path: str) -> None:
    project = ctx.environment.project
    mirror = git.mirror_path(project.name)
    try:
        git.sync_mirror(mirror, project.repository)
        sql = git.show(mirror, ctx.run.commit, path)
        get("pool").seed(slot.name, secret, sql)
    except BackendError:
        services.release_slot(ctx.environment)  # may be half-seeded: reset before reuse
        raise
    services.mark_seeded(slot)
    ctx.log(f"seeded {slot.name} from {path}")


def render(ctx: Context) -> None:
    text = get("runtime").render(ctx.target)
    Run.objects.filter(pk=ctx.run.pk).update(rendered=text)
    ctx.log(f"rendered {len(ctx.target.components)} components at {ctx.target.commit[:12]}")


def apply(ctx: Context) -> None:
    get("runtime").apply(ctx.target, ctx.log)
    Environment.objects.filter(pk=ctx.environment.pk).update(commit=ctx.target.commit)


def rollout(ctx: Context) -> None:
    urls = get("runtime").wait_ready(ctx.target, ctx.log, settings.PORTAL_READY_TIMEOUT)
    ctx.log("ready: " + ", ".join(f"{name} {url}" for name, url in urls.items()))
    services.set_status(ctx.environment, EnvironmentStatus.VERIFYING, urls=urls)


def dns(ctx: Context) -> None:
    address = get("runtime").address(ctx.target)
    get("dns").upsert(exposed_hosts(ctx.environment), address, ctx.log)


def smoke(ctx: Context) -> None:
    attempts = settings.PORTAL_SMOKE_ATTEMPTS
    done = ctx.run.smoke_attempts.count()
    if done and ctx.run.smoke_attempts.order_by("-number").first().ok:
        ctx.log("smoke checks already passed")
        return
    for number in range(done + 1, attempts + 1):
        checks = run_checks(ctx.environment)
        failures = [c["name"] for c in checks if not c["ok"]]
        SmokeAttempt.objects.create(
            run=ctx.run, number=number, passed=len(checks) - len(failures),
            failed=len(failures), failures=failures, checks=checks,
        )
        ctx.log(f"attempt {number}/{attempts}: {len(checks) - len(failures)} passed, "
                f"{len(failures)} failed" + (f" ({', '.join(failures)})" if failures else ""))
        if not failures:
            return
        if number < attempts:
            time.sleep(min(2 ** (number - 1), 10))


def run_checks(environment: Environment) -> list[dict[str, object]]:
    checks: list[dict[str, object]] = []
    for component in environment.project.components.all():
        base = environment.urls.get(component.name)
        for path in component.health_paths if base else ():
            answer = probes.get(base.rstrip("/") + path, timeout=5)
            checks.append({"name": f"health: {component.name} {path}", "ok": answer.ok,
                           "detail": answer.summary, "unreachable": not answer.reached})
    return checks


def report(ctx: Context) -> None:
    storage = get("storage")
    for attempt in ctx.run.smoke_attempts.all():
        key = f"{ctx.environment.env_key}/run-{ctx.run.pk}/attempt-{attempt.number}.html"
        html = render_to_string(
            "environments/smoke_report.html",
            {"environment": ctx.environment, "run": ctx.run, "attempt": attempt},
        )
        storage.save(key, html.encode(), "text/html")
        SmokeAttempt.objects.filter(pk=attempt.pk).update(report_key=key)
    last = ctx.run.smoke_attempts.order_by("-number").first()
    if last is None or last.ok:
        services.set_status(ctx.environment, EnvironmentStatus.READY, ready_at=timezone.now())
        ctx.log("environment is ready")
    else:
        detail = _why(last)
        services.set_status(ctx.environment, EnvironmentStatus.DEGRADED, detail)
        ctx.log(f"environment is degraded ({detail})")


def _why(attempt: SmokeAttempt) -> str:
    unreachable = [c["name"] for c in attempt.checks if c.get("unreachable")]
    if len(unreachable) < len(attempt.failures):
        return "smoke checks failing: " + ", ".join(attempt.failures)
    # The rollout step saw every component ready (on Kubernetes: its own readiness probes), so
    # what fails is the way from the portal to the app: no load balancer, DNS or route yet.
    return ("smoke checks could not reach the app (" + ", ".join(unreachable) + "): the "
            "runtime reports every component ready, but no HTTP answer came back from its URLs")


def notify(ctx: Context) -> None:
    environment = Environment.objects.select_related("project").get(pk=ctx.environment.pk)
    slot = environment.slot
    last = ctx.run.smoke_attempts.order_by("-number").first()
    notice = Notice(
        project=environment.project.name, branch=environment.branch, status=environment.status,
        kind=ctx.run.kind, portal_url=portal_url(environment), urls=environment.urls,
        database=slot.name if slot else "", detail=environment.status_detail,
        report_url=get("storage").url(last.report_key) if last and last.report_key else "",
    )
    try:
        ref = get("notify").send(notice, ctx.run.notify_ref)
    except BackendError as exc:
        ctx.log(f"notification not sent ({exc}); the run goes on")
        return
    Run.objects.filter(pk=ctx.run.pk).update(notify_ref=ref)
    ctx.log("notified")


def delete_workload(ctx: Context) -> None:
    get("runtime").delete(ctx.environment.env_key, ctx.log)


def delete_dns(ctx: Context) -> None:
    get("dns").delete(exposed_hosts(ctx.environment), ctx.log)


def release_db(ctx: Context) -> None:
    slot = services.release_slot(ctx.environment)
    ctx.log(f"DB slot {slot.name} released for reset" if slot else "no DB slot was held")
    Environment.objects.filter(pk=ctx.environment.pk).update(
        status=EnvironmentStatus.TORN_DOWN, urls={}, updated_at=timezone.now()
    )
    ctx.environment.status = EnvironmentStatus.TORN_DOWN


STEP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    f.__name__: f
    for f in (lease_db, render, apply, rollout, dns, smoke, report, notify,
              delete_workload, delete_dns, release_db)
}


def execute(run: Run, worker: str) -> None:
    """Run the claimed run's unfinished steps in order."""
    for step in run.steps.order_by("position"):
        if step.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
            continue
        if Run.objects.filter(pk=run.pk, cancel_requested=True).exists():
            services.finish_run(run, RunStatus.CANCELLED, "cancelled by a teardown")
            return
        if not services.keep_claim(run, worker):
            raise LostClaim(f"run {run.pk} was taken over by another worker")
        if not _run_step(run, step):
            return
    services.finish_run(run, RunStatus.SUCCEEDED)


def _run_step(run: Run, step: RunStep) -> bool:
    RunStep.objects.filter(pk=step.pk).update(
        status=StepStatus.RUNNING, started_at=step.started_at or timezone.now()
    )
    ctx = Context(run=run, step=step)
    try:
        STEP_FUNCTIONS[step.name](ctx)
    except PoolFull:
        RunStep.objects.filter(pk=step.pk).update(status=StepStatus.PENDING)
        position = services.queue_position(run.environment)
        ctx.log(f"no DB slot is free: queued (position {position})")
        services.park_run(run)
        return False
    except Exception as exc:
        _fail(ctx, exc)
        return False
    RunStep.objects.filter(pk=step.pk).update(
        status=StepStatus.SUCCEEDED, finished_at=timezone.now()
    )
    return True


def _fail(ctx: Context, exc: Exception) -> None:
    if not isinstance(exc, BackendError):
        logger.exception("step %s of run %s crashed", ctx.step.name, ctx.run.pk)
    hint = " (temporary: retrying can help)" if getattr(exc, "retryable", False) else ""
    message = f"{ctx.step.name} failed: {exc}{hint}"
    ctx.log(message)
    RunStep.objects.filter(pk=ctx.step.pk).update(
        status=StepStatus.FAILED, finished_at=timezone.now()
    )
    if ctx.run.kind == RunKind.TEARDOWN:
        # A teardown that got as far as torn down stays so; anything earlier can be retried.
        Environment.objects.filter(pk=ctx.environment.pk).exclude(
            status=EnvironmentStatus.TORN_DOWN
        ).update(
            status=EnvironmentStatus.FAILED, status_detail=f"teardown: {message}"
        )
    else:
        services.set_status(ctx.environment, EnvironmentStatus.FAILED, message)
    services.finish_run(ctx.run, RunStatus.FAILED, message)
