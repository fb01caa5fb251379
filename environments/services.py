"""What users ask for: views, the API, commands and webhooks change environments only through
here. How a run then moves its environment on is lifecycle.py's."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from environments import audit, git, lifecycle, naming, roles, taskqueue
from environments.audit import User
from environments.backends import BackendError, get
from environments.github import statuses
from environments.models import (
    PULL_REQUEST_TITLE_CHARS,
    QA_NOTE_CHARS,
    STEPS_BY_KIND,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    QaState,
    Run,
    RunKind,
    RunStatus,
    RunStep,
    UserQuota,
)
from environments.refused import Refused

logger = logging.getLogger("preview_portal")
_SHA = re.compile(r"[0-9a-f]{40}")


def ttl_for(project: Project) -> timedelta:
    return timedelta(hours=project.ttl_hours or settings.PORTAL_ENV_TTL_HOURS)


@dataclass(frozen=True)
class Target:
    """A branch and the commit of it to deploy, checked against the repository (check_branch)."""

    branch: str
    commit: str


def check_branch(project: Project, branch: str, commit: str | None) -> Target:
    """What to deploy: the branch's head, or `commit` when the branch's history holds it (any
    other commit of the repository, a fork's included, would deploy under the branch's name).
    Refused when the branch or commit is not usable. Asks the repository: call it before a
    transaction, not inside one."""
    _check_names(project, branch, commit)
    head = _head(project, branch)
    if commit is None or commit == head:
        return Target(branch, head)
    if not is_older(project, commit, head):
        raise Refused(f"commit {commit} is not on branch {branch!r} of {project.name}", 400,
                      {"project": project.name, "branch": branch, "commit": commit})
    return Target(branch, commit)


def check_pull_request_head(project: Project, branch: str, commit: str, *,
                            approved: bool = False) -> Target:
    """The head commit a signed pull_request delivery names. GitHub vouches for it, and the
    branch may have moved on (or been forced away from it) since: it is not looked for in the
    branch's history. `approved`: someone with write access asked for this head of a fork,
    which then deploys whatever deploy_forks says."""
    _check_names(project, branch, commit, approved=approved)
    _head(project, branch)
    return Target(branch, commit)


def _check_names(project: Project, branch: str, commit: str | None,
                 approved: bool = False) -> None:
    if not git.is_valid_branch_name(branch):
        raise Refused(f"{branch!r} is not a valid git branch name", 400, {"branch": branch})
    if git.PULL_HEAD.fullmatch(branch) and not (project.deploy_forks or approved):
        # GitHub's ref of a pull request's head is how a fork's code is reached: the same rule
        # as for a fork's pull request, whichever way the launch comes in.
        raise Refused(
            f"{branch!r} is a pull request's head, which may be a fork's code: project "
            f"{project.name} deploys those only with deploy_forks set (launch a branch of the "
            "repository by its own name)", 403, {"project": project.name, "branch": branch})
    # Full ids only: a short one is ambiguous, and what is stored is what runs, commit statuses
    # and QA sign-offs refer to.
    if commit is not None and not _SHA.fullmatch(commit):
        raise Refused(f"{commit!r} is not a commit id (its 40 hex digits)", 400)


def _head(project: Project, branch: str) -> str:
    try:
        head = git.resolve(project.repository, branch)
    except BackendError as exc:
        raise Refused(f"cannot read the repository of {project.name}: {exc}", 502) from exc
    if head is None:
        raise Refused(
            f"branch {branch!r} is not in the repository of {project.name}", 404,
            {"project": project.name, "branch": branch},
        )
    return head


def is_older(project: Project, commit: str, newer: str) -> bool:
    """Whether `commit` is `newer` or one of its ancestors in the project's repository (which
    a mirror is synced for: call it before a transaction)."""
    mirror = git.mirror_path(project.name)
    try:
        git.sync_mirror(mirror, project.repository)
    except BackendError as exc:
        raise Refused(f"cannot read the repository of {project.name}: {exc}", 502) from exc
    return git.is_ancestor(mirror, commit, newer)


def launch(project: Project, branch: str, *, actor: User, interface: str,
           commit: str | None = None, pull_request: int | None = None,
           after_teardown: bool = False) -> Environment:
    """Start a preview of the branch; a live one is redeployed instead (idempotent)."""
    return launch_target(project, check_branch(project, branch, commit), actor=actor,
                         interface=interface, pull_request=pull_request,
                         after_teardown=after_teardown)


def launch_target(project: Project, target: Target, *, actor: User, interface: str,
                  pull_request: int | None = None, after_teardown: bool = False,
                  approved_by: str = "") -> Environment:
    """Start a preview of the checked target; a live one is redeployed instead (idempotent).
    `approved_by`: the GitHub login who approved a fork's commit, recorded on its run.

    A branch whose environment is being torn down is refused (409), unless `after_teardown`:
    then it is launched again once the teardown is done. Webhooks ask for that, because a
    pull request reopened (or pushed to) right after it closed must end up running."""
    branch, commit = target.branch, target.commit
    existing = Environment.objects.active().filter(project=project, branch=branch).first()
    if existing and after_teardown and existing.status == EnvironmentStatus.TEARING_DOWN:
        if _relaunch_after_teardown(existing, commit, pull_request, actor, interface):
            return existing
        # The teardown finished meanwhile: what is there now decides.
        existing = Environment.objects.active().filter(project=project, branch=branch).first()
    if existing:
        redeploy(existing, actor=actor, interface=interface, commit=commit,
                 approved_by=approved_by)
        if pull_request is not None and existing.pull_request != pull_request:
            Environment.objects.filter(pk=existing.pk).update(pull_request=pull_request)
            existing.pull_request = pull_request
        return existing
    key = naming.env_key(project.name, branch)
    over = quota_problem(project, actor) or name_clash(key)
    if over:
        raise over
    now = timezone.now()
    try:
        with transaction.atomic():
            environment = Environment.objects.create(
                project=project, branch=branch, commit=commit, pull_request=pull_request,
                pull_request_title=_known_title(project, pull_request),
                owner=actor if actor is not None and actor.is_authenticated else None,
                env_key=key, status=EnvironmentStatus.QUEUED,
                queued_at=now, expires_at=now + ttl_for(project),
            )
            _create_run(environment, RunKind.DEPLOY, actor, commit, approved_by)
            audit.record(actor, interface, "launch", environment, branch=branch, commit=commit,
                         **_approval(approved_by))
    except IntegrityError:
        # Lost a race with an identical launch: that environment is the one to redeploy.
        existing = Environment.objects.active().filter(project=project, branch=branch).first()
        if existing is None:  # with an environment holding the same key
            raise name_clash(key) or Refused("launched at the same time", 409) from None
        redeploy(existing, actor=actor, interface=interface, commit=commit,
                 approved_by=approved_by)
        return existing
    return environment


def title_pull_request(projects: list[Project], number: int, title: str) -> list[int]:
    """Keep the pull request's title on its live environments; their ids."""
    titled = Environment.objects.active().filter(project__in=projects, pull_request=number)
    ids = list(titled.values_list("pk", flat=True))
    titled.update(pull_request_title=title[:PULL_REQUEST_TITLE_CHARS])
    return ids


def _known_title(project: Project, pull_request: int | None) -> str:
    """The title an earlier environment of the pull request had: one launched again after a
    teardown gets no new delivery to read it from."""
    if pull_request is None:
        return ""
    return Environment.objects.filter(project=project, pull_request=pull_request).order_by(
        "-id").values_list("pull_request_title", flat=True).first() or ""


def name_clash(key: str) -> Refused | None:
    """A live environment already named by `key`. Only one that kept a key of the old rule
    (md5 of the branch alone) can: branch "shop/main" of any project holds the key of `main`
    in project shop, and both would get the same hosts and runtime objects."""
    other = Environment.objects.active().filter(env_key=key).select_related("project").first()
    if other is None:
        return None
    return Refused(
        f"the names of this preview are held by {other.project.name}:{other.branch}, which "
        "was launched under the earlier naming rule: both would get the same hosts and "
        "runtime objects. Tear that one down first.", 409,
        {"project": other.project.name, "branch": other.branch, "environment": other.pk},
    )


def _relaunch_after_teardown(environment: Environment, commit: str, pull_request: int | None,
                             actor: User, interface: str) -> bool:
    """Remember the launch on the environment being torn down; False when it is gone already.
    The newest ask wins; a teardown asked for after it cancels it."""
    asked = Environment.objects.filter(
        pk=environment.pk, status=EnvironmentStatus.TEARING_DOWN
    ).update(relaunch={"commit": commit, "pull_request": pull_request, "interface": interface})
    if asked:
        audit.record(actor, interface, "launch_after_teardown", environment, commit=commit)
    return bool(asked)


def launch_asked_during_teardown(environment: Environment) -> Environment | None:
    """Carry out the launch asked for while `environment` (now torn down) was going away."""
    asked = Environment.objects.filter(pk=environment.pk).values_list("relaunch", flat=True)[0]
    if not asked:
        return None
    try:
        return launch(
            environment.project, environment.branch, actor=None, interface=asked["interface"],
            commit=asked["commit"], pull_request=asked["pull_request"],
        )
    finally:
        # Cleared only now: a teardown step resumed after a crash launches (idempotently)
        # again rather than never; a refused launch is not tried again.
        Environment.objects.filter(pk=environment.pk).update(relaunch=None)


def redeploy(environment: Environment, *, actor: User, interface: str,
             commit: str | None = None, approved_by: str = "") -> Run:
    _refuse_unless_may_change(environment, actor, "redeploy")
    if environment.status in (EnvironmentStatus.TEARING_DOWN, EnvironmentStatus.TORN_DOWN):
        raise Refused("the environment is being torn down; launch it again once it is gone", 409)
    commit = commit or check_branch(environment.project, environment.branch, None).commit
    with transaction.atomic():
        waiting = environment.runs.filter(
            kind__in=(RunKind.DEPLOY, RunKind.REDEPLOY),
            status__in=(RunStatus.PENDING, RunStatus.WAITING),
        ).first()
        if waiting:
            # Not started yet: it deploys the newest commit instead of queueing a second run.
            Run.objects.filter(pk=waiting.pk).update(commit=commit, approved_by=approved_by)
            run = waiting
        else:
            run = _create_run(environment, RunKind.REDEPLOY, actor, commit, approved_by)
        Environment.objects.filter(pk=environment.pk).update(
            expires_at=timezone.now() + ttl_for(environment.project)
        )
        audit.record(actor, interface, "redeploy", environment, commit=commit,
                     **_approval(approved_by))
    return run


def _approval(approved_by: str) -> dict[str, str]:
    """What the audit log adds to a deploy of a fork's commit: whose approval let it in."""
    return {"approved_by": approved_by} if approved_by else {}


def teardown(environment: Environment, *, actor: User, interface: str) -> Run:
    _refuse_unless_may_change(environment, actor, "tear down")
    with transaction.atomic():
        try:
            lifecycle.start_teardown(environment)
        except lifecycle.IllegalMove as exc:  # torn down, maybe since `environment` was read
            raise Refused("the environment is already torn down", 409) from exc
        lifecycle.cancel_for_teardown(environment)
        run = environment.runs.open().filter(kind=RunKind.TEARDOWN).first()
        if run is None:
            run = _create_run(environment, RunKind.TEARDOWN, actor, environment.commit)
        audit.record(actor, interface, "teardown", environment)
    return run


def may_change(environment: Environment, actor: User) -> bool:
    """Whether `actor` may redeploy or tear the environment down. A pinned one is being kept
    as it is: only its owner or an admin. Without a user (expiry, which skips pinned ones, and
    webhooks, acting for the repository) the portal may."""
    return not environment.pinned or actor is None or _owner_or_admin(environment, actor)


def _refuse_unless_may_change(environment: Environment, actor: User, action: str) -> None:
    if not may_change(environment, actor):
        raise Refused(f"the environment is pinned: only its owner or an admin may {action} it",
                      403, {"owner": environment.owner.get_username()
                            if environment.owner else None})


def _owner_or_admin(environment: Environment, actor: User) -> bool:
    return roles.can(actor, roles.PIN) or environment.owner_id == getattr(actor, "pk", None)


def quota_problem(project: Project, actor: User) -> Refused | None:
    """Why one more live environment is not allowed, or None (the launch page asks first)."""
    live = Environment.objects.active().select_related("project")
    project_limit = project.max_live_environments
    if project_limit is not None:
        held = list(live.filter(project=project))
        if len(held) >= project_limit:
            return _over_quota(f"project {project.name} has {len(held)} live environments, "
                               f"its limit is {project_limit}", project_limit, held)
    user_limit = _user_limit(actor)
    if user_limit:
        held = list(live.filter(owner=actor))
        if len(held) >= user_limit:
            return _over_quota(f"you have {len(held)} live environments, your limit is "
                               f"{user_limit}: tear one down first", user_limit, held)
    return None


def _user_limit(actor: User) -> int:
    if actor is None or not actor.is_authenticated:
        return 0  # webhooks and the system launch on behalf of the project only
    quota = UserQuota.objects.filter(user=actor).first()
    return quota.max_live_environments if quota else settings.PORTAL_QUOTA_PER_USER


def _over_quota(message: str, limit: int, held: list[Environment]) -> Refused:
    names = [f"{e.project.name}:{e.branch} (#{e.pk})" for e in held]
    return Refused(f"{message} ({', '.join(names)})", 409, {"limit": limit, "live": names})


def extend(environment: Environment, *, actor: User, interface: str, hours: float) -> None:
    """Push expiry `hours` further (from now if it already passed), up to the cap."""
    if not _owner_or_admin(environment, actor):
        raise Refused("only the environment's owner or an admin may extend it", 403)
    _push_expiry(environment, hours, actor, interface)


def extend_for_github_user(environment: Environment, *, login: str, hours: float) -> bool:
    """Extend on behalf of a GitHub user the webhook found to have write access to the
    repository: no portal user did it, so the audit log names the login. True when the cap
    cut the extension short."""
    return _push_expiry(environment, hours, None, Interface.WEBHOOK, github_login=login)


def _push_expiry(environment: Environment, hours: float, actor: User, interface: str,
                 **detail: Any) -> bool:
    if not environment.is_active or environment.status == EnvironmentStatus.TEARING_DOWN:
        raise Refused("the environment is going away; launch it again instead", 409)
    now = timezone.now()
    start = max(environment.expires_at or now, now)
    cap = now + timedelta(hours=settings.PORTAL_ENV_MAX_TTL_HOURS)
    expires = min(start + timedelta(hours=hours), cap)
    Environment.objects.filter(pk=environment.pk).update(expires_at=expires, warned_at=None)
    environment.expires_at = expires
    audit.record(actor, interface, "extend", environment, hours=hours,
                 expires_at=expires.isoformat(), **detail)
    return expires == cap


def set_pinned(environment: Environment, pinned: bool, *, actor: User, interface: str) -> None:
    Environment.objects.filter(pk=environment.pk).update(pinned=pinned, warned_at=None)
    environment.pinned = pinned
    audit.record(actor, interface, "pin" if pinned else "unpin", environment)


def expire(now: datetime) -> list[Environment]:
    """Tear down what expired; the system is the actor."""
    expired = list(Environment.objects.expired(now).exclude(
        status=EnvironmentStatus.TEARING_DOWN
    ).select_related("project"))
    for environment in expired:
        teardown(environment, actor=None, interface=Interface.SYSTEM)
    return expired


def expiring_soon(now: datetime) -> list[Environment]:
    """Environments inside the warning window that were not warned yet; marks them warned."""
    window = now + timedelta(hours=settings.PORTAL_EXPIRY_WARNING_HOURS)
    found = list(Environment.objects.active().filter(
        pinned=False, warned_at__isnull=True, expires_at__lte=window, expires_at__gt=now,
    ).select_related("project"))
    for environment in found:
        if Environment.objects.filter(pk=environment.pk, warned_at__isnull=True).update(
            warned_at=now
        ):
            audit.record(None, Interface.SYSTEM, "expiry_warning", environment,
                         expires_at=environment.expires_at.isoformat())
    return found


def rerun_smoke(environment: Environment, *, actor: User, interface: str) -> Run:
    if environment.status not in (EnvironmentStatus.READY, EnvironmentStatus.DEGRADED):
        raise Refused(
            f"smoke checks run on a ready or degraded environment, this one is "
            f"{environment.status}", 409,
        )
    with transaction.atomic():
        run = environment.runs.open().filter(kind=RunKind.SMOKE).first()
        if run is None:
            run = _create_run(environment, RunKind.SMOKE, actor, environment.commit)
        audit.record(actor, interface, "smoke", environment)
    return run


def may_sign_off(actor: User) -> bool:
    """QA's verdict is QA's or an admin's, never the developer's on their own work."""
    return actor is not None and bool(roles.roles_of(actor) & {roles.QA, roles.ADMIN})


def qa_signoff(environment: Environment, state: str, note: str, *, actor: User,
               interface: str, commit: str | None = None) -> list[str]:
    """Record QA's verdict on the deployed commit (`commit`: the one the signer saw); it holds
    until another commit is deployed. The environment's Slack thread and its pull request are
    told; what could not be told is returned, the sign-off stands all the same."""
    if not may_sign_off(actor):
        raise Refused("only QA or an admin may sign off a commit", 403)
    if state not in QaState.values:
        raise Refused(f"state must be one of {', '.join(QaState.values)}", 400, {"state": state})
    if len(note) > QA_NOTE_CHARS:
        raise Refused(f"the note is longer than {QA_NOTE_CHARS} characters", 400)
    if environment.status in (EnvironmentStatus.TEARING_DOWN, EnvironmentStatus.TORN_DOWN):
        raise Refused("the environment is going away: there is nothing to sign off", 409)
    deployed = environment.commit
    if not deployed or (commit and commit != deployed):
        raise Refused("the commit shown is not the one deployed now: look again first", 409,
                      {"deployed": deployed or None})
    fields = {"qa_state": state, "qa_note": note, "qa_by": actor.get_username(),
              "qa_at": timezone.now(), "qa_commit": deployed}
    with transaction.atomic():
        # A deploy that moved the commit meanwhile wins: the verdict was on the old one.
        if not Environment.objects.filter(pk=environment.pk, commit=deployed).update(**fields):
            raise Refused("a new commit was deployed meanwhile: look again first", 409)
        audit.record(actor, interface, "qa_signoff", environment, state=state, commit=deployed,
                     note=note)
    for name, value in fields.items():
        setattr(environment, name, value)
    problems: list[str] = []
    statuses.publish_qa(environment, problems.append)
    thread = environment.runs.exclude(notify_ref="").values_list("notify_ref", flat=True).first()
    label = QaState(state).label
    text = f"{environment}: QA {label} by {fields['qa_by']} at {deployed[:7]}" + (
        f": {note}" if note else "")
    try:
        get("notify").reply(text, thread or "")
    except BackendError as exc:
        problems.append(f"Slack not told ({exc})")
    return problems


def _create_run(environment: Environment, kind: str, actor: User, commit: str,
                approved_by: str = "") -> Run:
    taskqueue.check_queue()  # inside the caller's transaction: refused, nothing it made stays
    user = actor if actor is not None and actor.is_authenticated else None
    run = Run.objects.create(environment=environment, kind=kind, commit=commit, requested_by=user,
                             approved_by=approved_by)
    RunStep.objects.bulk_create(
        RunStep(run=run, position=i, name=name) for i, name in enumerate(STEPS_BY_KIND[kind])
    )
    taskqueue.enqueue_run(run.pk)
    return run
