"""The steps of a run. Each step looks at what exists and does only what is missing, so a step
run twice (a redelivered task, a resumed run) ends where one run would have."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from django.conf import settings
from django.utils import timezone

from environments import (
    datasets,
    dbpool,
    git,
    lifecycle,
    links,
    naming,
    redact,
    services,
)
from environments.backends import BackendError, get
from environments.backends.notify import Notice
from environments.backends.runtime import ComponentSpec, Target
from environments.github import statuses
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
from environments.refused import Refused
from environments.smoke import runner

logger = logging.getLogger("preview_portal.pipeline")
MAX_BACKOFF_SECONDS = 60
DETAIL_CHARS = 150  # of each failing check's message in the status detail


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
        logger.info("%s: %s", self.step.name, text,
                    extra={"environment": self.environment.pk, "run": self.run.pk,
                           "step": self.step.name})

    @property
    def commit(self) -> str:
        return self.run.commit or self.environment.commit

    @cached_property
    def target(self) -> Target:
        return target_for(self.environment, self.commit)


def is_fork_code(environment: Environment) -> bool:
    """A fork's pull request in a project that does not trust forks (deploy_forks): it runs
    only at a commit someone with write access approved, and without the components' env
    values, the project's secrets."""
    fork = git.PULL_HEAD.fullmatch(environment.branch) is not None
    return fork and not environment.project.deploy_forks


def target_for(environment: Environment, commit: str) -> Target:
    slot = environment.slot
    if slot is None:
        raise BackendError("the environment holds no DB slot")
    database = dbpool.slot_connection(slot)
    fork_code = is_fork_code(environment)
    try:
        components = tuple(
            ComponentSpec(
                name=c.name,
                image=naming.image(c.image, commit, environment.branch, environment.env_key),
                port=c.port, health_paths=tuple(c.health_paths),
                start_command=c.start_command, exposed=c.exposed,
                env={} if fork_code else dict(c.env_vars),
                host=environment.host(c.name),
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
        base_manifests=environment.project.base_manifests, database_directory=database.directory,
    )


def exposed_hosts(environment: Environment) -> list[str]:
    return [environment.host(c.name)
            for c in environment.project.components.filter(exposed=True)]


def portal_url(environment: Environment) -> str:
    return links.page_url("environment", environment.pk)


# The steps.

def lease_db(ctx: Context) -> None:
    dataset = datasets.current(ctx.environment.project)
    slot = dbpool.lease_slot(ctx.environment, dataset.pk if dataset else None)
    if slot is None:
        raise PoolFull
    database = dbpool.slot_connection(slot)
    try:
        get("pool").check(slot.name, database.password)
    except BackendError:
        dbpool.unlease_slot(slot)  # nothing was written: the slot stays usable
        raise
    ctx.log(f"DB slot {slot.name} is this environment's ({database.public()['host'] or 'file'})")
    if not slot.seeded:
        _prepare(ctx, slot)
    lifecycle.start_provisioning(ctx.environment)


def _prepare(ctx: Context, slot: DbSlot) -> None:
    """A slot new to the environment: the project's dataset, then the branch's seed on top.
    Marked seeded once both are in: a redeploy keeps the data (and dataset version) it has."""
    path = ctx.environment.project.seed_sql
    try:
        datasets.fill_leased(slot, ctx.environment.project, ctx.log)
        if path:
            _seed(ctx, DbSlot.objects.get(pk=slot.pk), path)
    except BackendError:
        dbpool.release_slot(ctx.environment)  # may be half-restored or half-seeded: reset
        raise
    dbpool.mark_seeded(slot)


def _seed(ctx: Context, slot: DbSlot, path: str) -> None:
    project = ctx.environment.project
    mirror = git.mirror_path(project.name)
    git.sync_mirror(mirror, project.repository)
    sql = git.show(mirror, ctx.run.commit, path)
    get("pool").seed(slot.name, dbpool.slot_connection(slot).password, sql)
    ctx.log(f"seeded {slot.name} from {path}")


def render(ctx: Context) -> None:
    text = get("runtime").render(ctx.target)
    Run.objects.filter(pk=ctx.run.pk).update(rendered=text)
    ctx.log(f"rendered {len(ctx.target.components)} components at {ctx.target.commit[:12]}")
    if is_fork_code(ctx.environment):
        _log_fork_code(ctx)


def _log_fork_code(ctx: Context) -> None:
    approval = f", approved by @{ctx.run.approved_by}" if ctx.run.approved_by else ""
    names = sorted({name for c in ctx.environment.project.components.all()
                    for name in c.env_vars})
    ctx.log(f"{ctx.commit[:12]} is a fork's commit{approval}: its components run without the "
            f"project's env values ({', '.join(names) or 'none are set'}); a new push to it "
            "needs a new /preview deploy")


def apply(ctx: Context) -> None:
    get("runtime").apply(ctx.target, ctx.log)
    Environment.objects.filter(pk=ctx.environment.pk).update(commit=ctx.target.commit)


def rollout(ctx: Context) -> None:
    urls = get("runtime").wait_ready(ctx.target, ctx.log, settings.PORTAL_READY_TIMEOUT)
    ctx.log("ready: " + ", ".join(f"{name} {url}" for name, url in urls.items()))
    lifecycle.start_verifying(ctx.environment, urls)


def dns(ctx: Context) -> None:
    address = get("runtime").address(ctx.target)
    get("dns").upsert(exposed_hosts(ctx.environment), address, ctx.log)


def smoke(ctx: Context) -> None:
    """Up to PORTAL_SMOKE_ATTEMPTS attempts with backoff while the environment warms up; each is
    recorded with its report as it ends. A resumed step goes on from the last recorded one."""
    attempts = settings.PORTAL_SMOKE_ATTEMPTS
    last = ctx.run.smoke_attempts.order_by("-number").first()
    if last and (last.ok or last.number >= attempts):
        ctx.log(f"smoke checks already ran ({last.number} attempts)")
        return
    suite = runner.prepared(ctx.environment, ctx.commit, ctx.run.pk)
    ctx.log("the checks reach " + (", ".join(f"{name} at {url}" for name, url in suite.urls.items())
                                   or "no component"))
    for number in range(last.number + 1 if last else 1, attempts + 1):
        if number > 1:
            _back_off(ctx, number)
        if _attempt(ctx, suite, number).ok:
            return


def _back_off(ctx: Context, number: int) -> None:
    delay = min(settings.PORTAL_SMOKE_BACKOFF * 2 ** (number - 2), MAX_BACKOFF_SECONDS)
    ctx.log(f"waiting {delay:g} s before attempt {number}")
    time.sleep(delay)
    if not lifecycle.keep_claim(ctx.run, ctx.run.claimed_by):
        raise LostClaim(f"run {ctx.run.pk} was taken over by another worker")


def report_key(environment: Environment, run: Run, number: int) -> str:
    return f"{environment.env_key}/run-{run.pk}/attempt-{number}.html"


def _attempt(ctx: Context, suite: runner.Suite, number: int) -> runner.Outcome:
    outcome = suite.run(number, f"smoke-{ctx.run.pk}-{number}-{secrets.token_hex(4)}", ctx.log)
    key = report_key(ctx.environment, ctx.run, number)
    get("storage").save(key, outcome.report, "text/html")
    SmokeAttempt.objects.update_or_create(
        run=ctx.run, number=number,
        defaults={
            "passed": outcome.count("passed"), "failed": outcome.count("failed"),
            "errors": outcome.count("error"), "failures": outcome.failures,
            "checks": outcome.checks, "report_key": key,
        },
    )
    failing = f" ({', '.join(outcome.failures)})" if outcome.failures else ""
    ctx.log(f"attempt {number}/{settings.PORTAL_SMOKE_ATTEMPTS}: {outcome.count('passed')} "
            f"passed, {outcome.count('failed')} failed, {outcome.count('error')} errors{failing}")
    return outcome


def report(ctx: Context) -> None:
    """The last attempt decides: ready, or degraded saying which checks fail and why (the
    environment stays up). Said here; the environment shows it as its run ends."""
    last = ctx.run.smoke_attempts.order_by("-number").first()
    if last and last.report_key:
        ctx.log(f"report of attempt {last.number}: {get('storage').url(last.report_key)}")
    ending = ending_of(ctx.run)
    ctx.log(f"environment is {ending.status}" + (f" ({ending.detail})" if ending.detail else ""))


def ending_of(run: Run) -> lifecycle.Ending:
    """Where a run that got through its steps leaves its environment."""
    if run.kind == RunKind.TEARDOWN:
        return lifecycle.Ending(EnvironmentStatus.TORN_DOWN, fields={"urls": {}})
    last = run.smoke_attempts.order_by("-number").first()
    if last is None or last.ok:
        return lifecycle.Ending(EnvironmentStatus.READY, fields={"ready_at": timezone.now()})
    return lifecycle.Ending(EnvironmentStatus.DEGRADED, _why(last))


def expiry_notice(environment: Environment) -> Notice:
    when = environment.expires_at.strftime("%Y-%m-%d %H:%M UTC") if environment.expires_at else ""
    return Notice(
        project=environment.project.name, branch=environment.branch, status=environment.status,
        kind="expiry_warning", portal_url=portal_url(environment), urls=environment.urls,
        detail=f"expires at {when}: extend it on its page to keep it",
    )


def _why(attempt: SmokeAttempt) -> str:
    failing = [check for check in attempt.checks if not check["ok"]]
    unreachable = [c["name"] for c in failing if c.get("unreachable")]
    if failing and len(unreachable) == len(failing):
        # The rollout step saw every component ready (on Kubernetes: its own readiness probes),
        # so what fails is the way from the portal to the app: no load balancer, DNS or route.
        return ("smoke checks could not reach the app (" + ", ".join(unreachable) + "): the "
                "runtime reports every component ready, but no HTTP answer came back from its "
                "URLs")
    return f"smoke checks failing after {attempt.number} attempts: " + "; ".join(
        f"{check['name']} ({check['detail'][:DETAIL_CHARS]})" if check["detail"] else check["name"]
        for check in failing
    )


def notify(ctx: Context) -> None:
    _send_notice(ctx, finished=True, ending=ending_of(ctx.run))


def notice_for(run: Run, finished: bool, ending: lifecycle.Ending | None = None) -> Notice:
    """`ending`: the status the run is about to leave, told before the environment shows it."""
    environment = Environment.objects.select_related("project").get(pk=run.environment_id)
    if ending is not None:
        environment.status, environment.status_detail = ending.status, ending.detail
    slot = environment.slot
    database = get("pool").connection(slot.name).public() if slot else {}
    last = run.smoke_attempts.order_by("-number").first()
    return Notice(
        project=environment.project.name, branch=environment.branch, status=environment.status,
        kind=run.kind, finished=finished, portal_url=portal_url(environment),
        urls=environment.urls, detail=environment.status_detail,
        database=" on ".join(filter(None, (database.get("name"), database.get("host")))),
        report_url=get("storage").url(last.report_key) if last and last.report_key else "",
    )


def _send_notice(ctx: Context, finished: bool, ending: lifecycle.Ending | None = None) -> None:
    """Post the run's message, or update it in place; never fails the run."""
    try:
        ref = get("notify").send(notice_for(ctx.run, finished, ending), ctx.run.notify_ref)
    except BackendError as exc:
        ctx.log(f"notification not sent ({exc}); the run goes on")
        return
    if ref != ctx.run.notify_ref:
        Run.objects.filter(pk=ctx.run.pk).update(notify_ref=ref)
        ctx.run.notify_ref = ref
    ctx.log("notified" if finished else f"announced the {ctx.run.kind}")


def delete_workload(ctx: Context) -> None:
    get("runtime").delete(ctx.environment.env_key, ctx.log)


def delete_dns(ctx: Context) -> None:
    get("dns").delete(exposed_hosts(ctx.environment), ctx.log)


def release_db(ctx: Context) -> None:
    slot = dbpool.release_slot(ctx.environment)
    ctx.log(f"DB slot {slot.name} released for reset" if slot else "no DB slot was held")


def launch_asked_during_teardown(run: Run) -> None:
    """Once the environment is torn down (a crash before this leaves it to the reconciler)."""
    environment = Environment.objects.select_related("project").get(pk=run.environment_id)
    try:
        again = services.launch_asked_during_teardown(environment)
    except Refused as exc:
        _log_on_run(run, f"the launch asked for during the teardown was refused: {exc}")
        return
    if again:
        _log_on_run(run, f"launched again as environment {again.pk}, as asked during the "
                         "teardown")


STEP_FUNCTIONS: dict[str, Callable[[Context], None]] = {
    f.__name__: f
    for f in (lease_db, render, apply, rollout, dns, smoke, report, notify,
              delete_workload, delete_dns, release_db)
}


def execute(run: Run, worker: str) -> None:
    """Run the claimed run's unfinished steps in order; a pull request is told before and
    after (a run that lost its claim is told by the worker that took it over)."""
    _tell_github(run)
    _execute_steps(run, worker)
    _tell_github(run)


def _tell_github(run: Run) -> None:
    statuses.publish(run, portal_url(run.environment), lambda text: _log_on_run(run, text))


def _log_on_run(run: Run, text: str) -> None:
    # Beside the step that ran last (or runs first): where a reader of the run looks.
    steps = run.steps.order_by("-position")
    step = steps.exclude(started_at=None).first() or steps.last()
    Context(run=run, step=step).log(text)


def _execute_steps(run: Run, worker: str) -> None:
    """The run's message is posted as its first unfinished step starts."""
    announced = bool(run.notify_ref)
    for step in run.steps.order_by("position"):
        if step.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
            continue
        if Run.objects.filter(pk=run.pk, cancel_requested=True).exists():
            lifecycle.finish_run(run, RunStatus.CANCELLED, "cancelled by a teardown")
            return
        if not lifecycle.keep_claim(run, worker):
            raise LostClaim(f"run {run.pk} was taken over by another worker")
        if not announced:
            _send_notice(Context(run=run, step=step), finished=False)
            announced = True
        if not _run_step(run, step):
            return
    lifecycle.finish_run(run, RunStatus.SUCCEEDED, ending=ending_of(run))
    if run.kind == RunKind.TEARDOWN:
        launch_asked_during_teardown(run)


def _run_step(run: Run, step: RunStep) -> bool:
    RunStep.objects.filter(pk=step.pk).update(
        status=StepStatus.RUNNING, started_at=step.started_at or timezone.now()
    )
    ctx = Context(run=run, step=step)
    try:
        STEP_FUNCTIONS[step.name](ctx)
    except PoolFull:
        RunStep.objects.filter(pk=step.pk).update(status=StepStatus.PENDING)
        position = dbpool.queue_position(run.environment)
        ctx.log(f"no DB slot is free: queued (position {position})")
        lifecycle.park_run(run)
        return False
    except LostClaim:
        raise  # the run is another worker's now: nothing of it is ours to mark
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
    message = _redacted(ctx.environment, f"{ctx.step.name} failed: {exc}{hint}")
    ctx.log(message)
    RunStep.objects.filter(pk=ctx.step.pk).update(
        status=StepStatus.FAILED, finished_at=timezone.now()
    )
    teardown = ctx.run.kind == RunKind.TEARDOWN  # anything short of torn down can be retried
    ending = lifecycle.Ending(EnvironmentStatus.FAILED,
                             f"teardown: {message}" if teardown else message)
    _send_notice(ctx, finished=True, ending=ending)
    lifecycle.finish_run(ctx.run, RunStatus.FAILED, message, ending=ending)


def _redacted(environment: Environment, text: str) -> str:
    """A failing component's last output may print its DB password or env values; the failure
    reaches every role, Slack and the pull request."""
    slot = environment.slot
    try:
        password = dbpool.slot_connection(slot).password if slot else ""
    except ValueError:  # sealed under another key: no step could have handed it out either
        password = ""
    return redact.secrets(text, redact.secret_values(environment.project, password))
