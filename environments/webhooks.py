"""POST /webhooks/github: pull requests launch, redeploy and tear down their environments, a
reply `/preview extend 2d` on a pull request extends its environment, and `/preview deploy`
deploys its head (a fork's once, at that commit, without the project's env values: its next
push waits for another `/preview deploy`).

Nothing of a delivery is parsed before its signature checks out. To know which project's secret
applies one would have to read the repository from the body, so instead the raw body is checked
against every secret there is: the portal's and each project's own. A project with a secret of
its own trusts only that one; the others trust the portal's. Then the JSON is read, and a
delivery acts only on projects whose secret signed it.

Each delivery is handled once (X-GitHub-Delivery, and the digest of its body: a captured
delivery sent again under a new id is no new event), in one transaction with what it changes: a
refused one leaves nothing behind, not even its id, so GitHub's "Redeliver" works once fixed.
What git and GitHub are asked (a branch's head, a commenter's access) is asked before that
transaction, and a reply on the pull request is posted after it: a database with one writer
(SQLite) would otherwise wait on the network.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from environments import audit, crypto, github_status, services
from environments.backends import BackendError
from environments.backends.github import GitHub
from environments.models import Environment, Interface, Project, RunKind, WebhookDelivery
from environments.refused import Refused

logger = logging.getLogger("preview_portal.webhooks")

KEEP_DELIVERIES = timedelta(days=30)
DEPLOY_ACTIONS = frozenset({"opened", "reopened", "ready_for_review", "synchronize"})
# `/preview extend 2d`: hours or days; the number's length only keeps the arithmetic sane, the
# cap (PORTAL_ENV_MAX_TTL_HOURS) is what limits the extension.
EXTEND = re.compile(re.escape(github_status.EXTEND_COMMAND) + r"\b[ \t]*(?P<amount>\S*)")
DEPLOY_COMMAND = "/preview deploy"
DEPLOY = re.compile(re.escape(DEPLOY_COMMAND) + r"\b")
AMOUNT = re.compile(r"(?P<number>[1-9]\d{0,4})(?P<unit>[hd])")
WRITE_ACCESS = frozenset({"admin", "maintain", "write"})
# What GitHub allows in a user's login; anything else (a bot's "name[bot]") has no write access
# to check and must not reach a URL path.
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")

Outcome = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Trust:
    """Whose secret signed the delivery."""

    portal: bool
    projects: frozenset[int]

    def covers(self, project: Project) -> bool:
        return project.pk in self.projects if project.webhook_secret else self.portal


@dataclass(frozen=True)
class PullRequest:
    repository: str
    number: int
    action: str
    branch: str
    sha: str
    draft: bool
    from_fork: bool
    title: str


@dataclass(frozen=True)
class PullRequestComment:
    repository: str
    number: int
    action: str
    body: str
    login: str


@dataclass(frozen=True)
class Prepared:
    """What a delivery does, its questions to git and GitHub answered: `apply` runs in the
    delivery's transaction; `reply` (a comment on the pull request) once that is committed."""

    apply: Callable[[WebhookDelivery], Outcome]
    reply: Callable[[str], None] | None = None


@csrf_exempt
def github(request: HttpRequest) -> JsonResponse:
    try:
        if request.method != "POST":
            raise Refused("GitHub webhooks are POSTed", 405)
        trust = verify(request)
        event, delivery_id, payload = parse(request)
        digest = hashlib.sha256(request.body).hexdigest()
        return handle(event, delivery_id, digest, payload, trust)
    except Refused as exc:
        return JsonResponse({"error": exc.message, "detail": exc.detail or None},
                            status=exc.status)


# Before anything is parsed: the signature.

def verify(request: HttpRequest) -> Trust:
    signature = request.headers.get("X-Hub-Signature-256", "")
    if not signature:
        raise Refused(
            "the delivery is not signed (no X-Hub-Signature-256): give the GitHub webhook a "
            "secret", 401)
    portal_secret = settings.PORTAL_GITHUB_WEBHOOK_SECRET
    own = _project_secrets()
    if not portal_secret and not own:
        raise Refused(
            "the portal has no webhook secret: set PORTAL_GITHUB_WEBHOOK_SECRET or a "
            "project's webhook secret", 403)
    body = request.body
    trust = Trust(
        portal=bool(portal_secret) and _signed(body, portal_secret, signature),
        projects=frozenset(pk for pk, secret in own if _signed(body, secret, signature)),
    )
    if not (trust.portal or trust.projects):
        raise Refused(
            "the signature does not match: the GitHub webhook's secret differs from the "
            "portal's (or the project's)", 401)
    return trust


def _project_secrets() -> list[tuple[int, str]]:
    secrets = []
    for pk, name, sealed in Project.objects.exclude(webhook_secret="").values_list(
        "pk", "name", "webhook_secret"
    ):
        try:
            secrets.append((pk, crypto.unseal(sealed)))
        except ValueError as exc:  # PORTAL_SECRET_KEY changed: it verifies nothing any more
            logger.warning("webhook secret of project %s: %s", name, exc)
    return secrets


def _signed(body: bytes, secret: str, signature: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode())


# A verified delivery.

def parse(request: HttpRequest) -> tuple[str, str, dict[str, Any]]:
    event = request.headers.get("X-GitHub-Event", "")
    delivery_id = request.headers.get("X-GitHub-Delivery", "")
    if not 0 < len(event) <= 50 or not 0 < len(delivery_id) <= 100:
        raise Refused(
            "X-GitHub-Event and X-GitHub-Delivery headers are required (GitHub sends an event "
            "name and a GUID)", 400)
    if request.content_type != "application/json":
        raise Refused(
            f"the body is {request.content_type or 'untyped'}: set the GitHub webhook's "
            "content type to application/json", 415)
    try:
        payload = json.loads(request.body)
    except ValueError as exc:
        raise Refused("the body is not valid JSON", 400, {"reason": str(exc)}) from exc
    if not isinstance(payload, dict):
        raise Refused("the body is not a JSON object", 400)
    return event, delivery_id, payload


def handle(event: str, delivery_id: str, digest: str, payload: dict[str, Any],
           trust: Trust) -> JsonResponse:
    earlier = WebhookDelivery.objects.filter(Q(delivery_id=delivery_id) | Q(digest=digest)).first()
    if earlier is not None:
        return _duplicate(earlier.delivery_id)
    pull_request = _pull_request(payload) if event == "pull_request" else None
    comment = _pull_request_comment(payload) if event == "issue_comment" else None
    number = pull_request.number if pull_request else comment.number if comment else None
    prepared = _prepare(event, payload, pull_request, comment, trust)
    with transaction.atomic():
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    delivery_id=delivery_id, digest=digest, event=event,
                    action=str(payload.get("action") or "")[:50],
                    repository=_repository(payload).lower()[:200],
                    pull_request=number,
                )
        except IntegrityError:  # the same delivery (or body), concurrently
            return _duplicate(delivery_id)
        # GitHub redelivers (by hand) deliveries of the last 3 days: a month is plenty to know
        # them again, and a busy repository's deliveries would otherwise pile up forever.
        WebhookDelivery.objects.filter(received_at__lt=delivery.received_at - KEEP_DELIVERIES
                                       ).delete()
        with audit.acting_for(_sender(payload)):
            status, result = prepared.apply(delivery)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(result=result)
    if prepared.reply is not None and "reply" in result:
        status, result = _replied(prepared.reply, status, result)
    return JsonResponse(result, status=status)


def _prepare(event: str, payload: dict[str, Any], pull_request: PullRequest | None,
             comment: PullRequestComment | None, trust: Trust) -> Prepared:
    if event == "ping":
        return Prepared(lambda delivery: (200, _pong(payload)))
    if pull_request is not None:
        return _prepare_pull_request(pull_request, trust)
    if event == "issue_comment":
        return _prepare_comment(comment, trust)
    return Prepared(lambda delivery: (
        200, {"status": "ignored", "detail": f"{event} events are not used"}))


def _replied(reply: Callable[[str], None], status: int, result: dict[str, Any]) -> Outcome:
    try:
        reply(result["reply"])
    except BackendError as exc:
        # What the command changed is committed (a redelivery is a duplicate): say both.
        logger.warning("could not reply on the pull request: %s", exc)
        return 502, {"error": f"could not reply on the pull request: {exc}", "detail": result}
    return status, result


def _sender(payload: dict[str, Any]) -> str:
    """Who on GitHub caused the delivery, as the audit log names them."""
    login = (payload.get("sender") or {}).get("login")
    return f"{str(login)[:100]} via GitHub" if login else "GitHub"


def _duplicate(delivery_id: str) -> JsonResponse:
    """`delivery_id`: the delivery first handled (a replay's own id may differ)."""
    return JsonResponse({"status": "duplicate",
                         "detail": f"delivery {delivery_id} was handled already"})


def _pong(payload: dict[str, Any]) -> dict[str, Any]:
    repository = _repository(payload)
    projects = list(_projects(repository).values_list("name", flat=True))
    result: dict[str, Any] = {"status": "pong", "projects": projects}
    if not projects:
        result["detail"] = (f"no project has github_repository {repository!r}: its pull "
                            "requests will be refused until one has")
    return result


# pull_request events.

def _prepare_pull_request(pull_request: PullRequest, trust: Trust) -> Prepared:
    trusted = _trusted_projects(pull_request.repository, trust)
    action = pull_request.action
    if action == "closed":
        return Prepared(lambda delivery: _accepted(
            [_close(project, pull_request) for project in trusted]))
    if action == "edited":
        return Prepared(lambda delivery: _retitled(trusted, pull_request))
    if action not in DEPLOY_ACTIONS:
        return Prepared(lambda delivery: (
            200, {"status": "ignored", "detail": f"pull_request {action} is not used"}))
    if _closed_earlier(pull_request):
        return Prepared(lambda delivery: _ignored_as_closed(pull_request))
    plans = [(project, _deploy_plan(project, pull_request)) for project in trusted]
    held = _held_for_approval(trusted, pull_request)

    def apply(delivery: WebhookDelivery) -> Outcome:
        # Again: a `closed` delivery may have been recorded while git was asked.
        if _closed_earlier(pull_request):
            return _ignored_as_closed(pull_request)
        status, result = _accepted([_deploy(project, pull_request, plan)
                                    for project, plan in plans])
        if held:
            result["reply"] = _held_text(pull_request, held)
        return status, result

    return Prepared(apply, _reply_on(pull_request.repository, pull_request.number)
                    if held else None)


def _retitled(projects: list[Project], pull_request: PullRequest) -> Outcome:
    titled = services.title_pull_request(projects, pull_request.number, pull_request.title)
    return 200, {"status": "accepted" if titled else "ignored", "environments": titled}


def _accepted(results: list[dict[str, Any]]) -> Outcome:
    busy = any("environment" in r for r in results)
    return (202 if busy else 200), {"status": "accepted" if busy else "ignored",
                                    "results": results}


def _closed_earlier(pull_request: PullRequest) -> bool:
    """Delivered out of order: deploying now would leave an environment for a closed pull
    request running until it expires."""
    if pull_request.action == "reopened":
        return False
    last = WebhookDelivery.objects.filter(
        repository=pull_request.repository.lower(), pull_request=pull_request.number,
        action__in=("closed", "reopened"),
    ).order_by("-id").first()
    return last is not None and last.action == "closed"


def _ignored_as_closed(pull_request: PullRequest) -> Outcome:
    return 200, {"status": "ignored",
                 "detail": f"pull request #{pull_request.number} was closed by an earlier "
                           "delivery"}


def _deploy_plan(project: Project, pull_request: PullRequest) -> services.Target | str:
    """The checked commit to deploy for the project, or why it is skipped."""
    if pull_request.from_fork and not project.deploy_forks:
        return ("from a fork: its code would run with this project's database and settings "
                f"(the project's deploy_forks allows it; `{DEPLOY_COMMAND}` from someone with "
                "write access deploys its head once)")
    live = Environment.objects.active().filter(project=project, branch=pull_request.branch)
    if pull_request.draft and not project.deploy_drafts and not live.exists():
        return "a draft (the project's deploy_drafts allows it)"
    target = services.check_pull_request_head(project, pull_request.branch, pull_request.sha)
    current = _current_commit(live.first())
    if (pull_request.action == "synchronize" and current and current != target.commit
            and services.is_older(project, target.commit, current)):
        # A synchronize delivered late (or replayed) would roll the preview back.
        return f"{target.commit[:12]} is older than the preview's commit {current[:12]}"
    return target


def _held_for_approval(projects: list[Project], pull_request: PullRequest) -> list[Environment]:
    """The previews a push to a fork leaves where they are: each was deployed at a commit
    someone approved, and approved that commit only."""
    if pull_request.action != "synchronize" or not pull_request.from_fork:
        return []
    return list(Environment.objects.active().filter(
        project__in=[p for p in projects if not p.deploy_forks], branch=pull_request.branch,
    ).select_related("project"))


def _held_text(pull_request: PullRequest, held: list[Environment]) -> str:
    previews = ", ".join(f"the `{e.project.name}` preview stays at {_current_commit(e)[:12]}"
                         for e in held)
    return (f"{pull_request.sha[:12]} was pushed from a fork and is not deployed: {previews}. "
            f"A fork's commit is deployed only when someone with write access approves it: "
            f"comment `{DEPLOY_COMMAND}` to deploy this one.")


def _reply_on(repository: str, number: int, login: str = "") -> Callable[[str], None] | None:
    """Posts a reply on the pull request (addressed to `login`); None without a GitHub token."""
    github = github_status.client()
    if github is None:
        return None
    mention = f"@{login} " if login else ""
    return lambda text: github.create_comment(repository, number, mention + text)


def _current_commit(environment: Environment | None) -> str:
    """The newest commit the environment is deployed at or is being deployed at."""
    if environment is None:
        return ""
    newest = environment.runs.filter(kind__in=(RunKind.DEPLOY, RunKind.REDEPLOY)).order_by(
        "-id").values_list("commit", flat=True).first()
    return newest or environment.commit


def _deploy(project: Project, pull_request: PullRequest,
            plan: services.Target | str) -> dict[str, Any]:
    if isinstance(plan, str):
        return {"project": project.name, "skipped": plan}
    environment = services.launch_target(
        project, plan, actor=None, interface=Interface.WEBHOOK,
        pull_request=pull_request.number, after_teardown=True,
    )
    services.title_pull_request([project], pull_request.number, pull_request.title)
    return {"project": project.name, "environment": environment.pk}


def _close(project: Project, pull_request: PullRequest) -> dict[str, Any]:
    environment = Environment.objects.active().filter(
        project=project, branch=pull_request.branch
    ).first()
    if environment is None:
        return {"project": project.name, "skipped": "no environment to tear down"}
    services.teardown(environment, actor=None, interface=Interface.WEBHOOK)
    return {"project": project.name, "environment": environment.pk}


def _trusted_projects(repository: str, trust: Trust) -> list[Project]:
    projects = list(_projects(repository))
    if not projects:
        raise Refused(f"no project has github_repository {repository!r}", 404,
                               {"repository": repository})
    trusted = [p for p in projects if trust.covers(p)]
    if not trusted:
        raise Refused(
            f"the delivery is not signed with the secret of {repository}'s project", 403,
            {"repository": repository})
    return trusted


# issue_comment events: `/preview extend <N>h|d` and `/preview deploy` on a pull request.

def _prepare_comment(comment: PullRequestComment | None, trust: Trust) -> Prepared:
    text = comment.body.lstrip() if comment and comment.action == "created" else ""
    extend, deploy = EXTEND.match(text), DEPLOY.match(text)
    if comment is None or not (extend or deploy):
        return Prepared(lambda delivery: (
            200, {"status": "ignored",
                  "detail": f"only new `{github_status.EXTEND_COMMAND} <N>h|d` and "
                            f"`{DEPLOY_COMMAND}` comments on pull requests are used"}))
    trusted = _trusted_projects(comment.repository, trust)
    github = github_status.client()
    if github is None:
        command = github_status.EXTEND_COMMAND if extend else DEPLOY_COMMAND
        raise Refused(
            f"{command} needs PORTAL_GITHUB_TOKEN, to check the commenter's access and to "
            "reply", 503)
    apply = (_prepare_extend(comment, extend["amount"], trusted, github) if extend
             else _prepare_deploy(comment, trusted, github))
    return Prepared(apply, _reply_on(comment.repository, comment.number, comment.login))


def _prepare_extend(comment: PullRequestComment, amount: str, projects: list[Project],
                    github: GitHub) -> Callable[[WebhookDelivery], Outcome]:
    """An extend command's effect: (HTTP status, result with the reply on the pull request)."""
    found = AMOUNT.fullmatch(amount)
    if found is None:
        return lambda delivery: (200, {"status": "refused", "reply": (
            f"`{amount or '(nothing)'}` is not a duration: reply for example "
            f"`{github_status.EXTEND_COMMAND} 2d`, `12h` or `3d`.")})
    if not _can_write(github, comment):
        return lambda delivery: (403, {"status": "refused", "reply": (
            "only people with write access to the repository can extend its previews; "
            "nothing was changed.")})
    hours = int(found["number"]) * (24 if found["unit"] == "d" else 1)
    return lambda delivery: _extend(comment, hours, projects)


def _prepare_deploy(comment: PullRequestComment, projects: list[Project],
                    github: GitHub) -> Callable[[WebhookDelivery], Outcome]:
    """A deploy command's effect: the pull request's head as GitHub has it now, checked."""
    if not _can_write(github, comment):
        return lambda delivery: (403, {"status": "refused", "reply": (
            "only people with write access to the repository can deploy its pull requests' "
            "previews; nothing was deployed.")})
    pull_request = _pull_request_now(github, comment)
    if pull_request is None:
        return lambda delivery: (200, {"status": "ignored", "reply": (
            "this pull request is closed; nothing was deployed.")})
    plans = [(project, _approved_plan(project, pull_request)) for project in projects]

    def apply(delivery: WebhookDelivery) -> Outcome:
        if _closed_earlier(pull_request):
            return 200, {"status": "ignored",
                         "reply": "this pull request is closed; nothing was deployed."}
        done = [_deploy_approved(project, pull_request, plan, comment.login)
                for project, plan in plans]
        environments = [pk for pk, _line in done if pk is not None]
        return (202 if environments else 200), {
            "status": "accepted" if environments else "ignored", "environments": environments,
            "commit": pull_request.sha, "reply": "\n".join(line for _pk, line in done)}

    return apply


def _pull_request_now(github: GitHub, comment: PullRequestComment) -> PullRequest | None:
    """The pull request commented on, read as a delivery of it would be; None when closed."""
    try:
        found = github.pull_request(comment.repository, comment.number)
    except BackendError as exc:
        raise Refused(f"could not read pull request #{comment.number} of "
                               f"{comment.repository}: {exc}", 502) from exc
    if found.get("state") != "open":
        return None
    return _pull_request({"action": "deploy", "number": comment.number,
                          "repository": {"full_name": comment.repository},
                          "pull_request": found})


def _approved_plan(project: Project, pull_request: PullRequest) -> services.Target | str:
    """The commit to deploy, or why not (said in the reply)."""
    try:
        return services.check_pull_request_head(project, pull_request.branch, pull_request.sha,
                                                approved=pull_request.from_fork)
    except Refused as refused:
        return str(refused)


def _deploy_approved(project: Project, pull_request: PullRequest, plan: services.Target | str,
                     login: str) -> tuple[int | None, str]:
    """(the environment deployed, the reply's line about it)."""
    name = f"`{project.name}` preview"
    if isinstance(plan, str):
        return None, f"the {name} was not deployed: {plan}."
    fork = pull_request.from_fork and not project.deploy_forks
    try:
        # A fork's approval is for this commit: relaunched after a teardown, its branch would
        # be checked as if nobody had approved it, so a teardown under way refuses it instead.
        environment = services.launch_target(
            project, plan, actor=None, interface=Interface.WEBHOOK,
            pull_request=pull_request.number, after_teardown=not fork,
            approved_by=login if fork else "",
        )
    except Refused as refused:
        return None, f"the {name} was not deployed: {refused}."
    if not fork:
        return environment.pk, f"the {name} is deploying {plan.commit[:12]}."
    return environment.pk, (
        f"the {name} is deploying this fork's commit {plan.commit[:12]}, once, without the "
        f"project's env values. A new push is not deployed until someone with write access "
        f"comments `{DEPLOY_COMMAND}` again.")


def _extend(comment: PullRequestComment, hours: int, projects: list[Project]) -> Outcome:
    environments = list(Environment.objects.active().filter(
        project__in=projects, pull_request=comment.number).select_related("project"))
    if not environments:
        return 200, {"status": "ignored",
                     "reply": "this pull request has no live preview to extend."}
    lines = [_extend_one(environment, hours, comment.login) for environment in environments]
    return 200, {"status": "accepted", "environments": [e.pk for e in environments],
                 "reply": "\n".join(lines)}


def _can_write(github: GitHub, comment: PullRequestComment) -> bool:
    if not LOGIN.fullmatch(comment.login):
        return False
    try:
        return github.permission(comment.repository, comment.login) in WRITE_ACCESS
    except BackendError as exc:
        raise Refused(f"could not check {comment.login}'s access to "
                               f"{comment.repository}: {exc}", 502) from exc


def _extend_one(environment: Environment, hours: int, login: str) -> str:
    name = f"`{environment.project.name}` preview"
    try:
        capped = services.extend_for_github_user(environment, login=login, hours=hours)
    except Refused as refused:
        return f"the {name} was not extended: {refused}."
    cut = (f" (the most allowed: {github_status.hours_text(settings.PORTAL_ENV_MAX_TTL_HOURS)} "
           "from now)" if capped else "")
    return f"the {name} now expires at **{github_status.when(environment.expires_at)}**{cut}."


# Reading payloads (valid JSON may still lack what GitHub always sends).

def _projects(repository: str) -> QuerySet[Project]:
    if not repository:  # iexact="" would match every project without a repository
        return Project.objects.none()
    return Project.objects.filter(github_repository__iexact=repository)


def _repository(payload: dict[str, Any]) -> str:
    return _text(payload, "repository", "full_name", required=False)


def _pull_request(payload: dict[str, Any]) -> PullRequest:
    number = _field(payload, "number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise Refused("the payload has no pull request number", 400)
    repository = _text(payload, "repository", "full_name")
    head_repository = _field(payload, "pull_request", "head", "repo", "full_name")
    base_repository = _text(payload, "pull_request", "base", "repo", "full_name")
    # A fork's branch is not in the project's repository (and may share a name with one that
    # is): GitHub keeps every pull request's head at refs/pull/<n>/head of the base repository.
    from_fork = (not isinstance(head_repository, str)
                 or head_repository.lower() != base_repository.lower())
    branch = f"pull/{number}/head" if from_fork else _text(payload, "pull_request", "head", "ref")
    return PullRequest(
        repository=repository, number=number, action=_text(payload, "action"), branch=branch,
        sha=_text(payload, "pull_request", "head", "sha"),
        draft=_field(payload, "pull_request", "draft") is True, from_fork=from_fork,
        title=_text(payload, "pull_request", "title", required=False),
    )


def _pull_request_comment(payload: dict[str, Any]) -> PullRequestComment | None:
    """The comment, or None when it is on an issue (not a pull request)."""
    if not isinstance(_field(payload, "issue", "pull_request"), dict):
        return None
    number = _field(payload, "issue", "number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise Refused("the payload has no issue number", 400)
    body = _field(payload, "comment", "body")
    return PullRequestComment(
        repository=_text(payload, "repository", "full_name"), number=number,
        action=_text(payload, "action"), body=body if isinstance(body, str) else "",
        login=_text(payload, "comment", "user", "login"),
    )


def _field(payload: dict[str, Any], *path: str) -> Any:
    value: Any = payload
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _text(payload: dict[str, Any], *path: str, required: bool = True) -> str:
    value = _field(payload, *path)
    if isinstance(value, str) and value:
        return value
    if required:
        raise Refused(f"the payload has no {'.'.join(path)}", 400)
    return ""
