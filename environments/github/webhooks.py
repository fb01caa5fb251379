"""POST /webhooks/github: pull requests launch, redeploy and tear down their environments;
a comment on one may carry a command (github/commands.py: `/preview extend`, `/preview deploy`).

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from environments import audit, crypto, services
from environments.backends import BackendError
from environments.github import commands, events, statuses
from environments.github.events import Outcome, Prepared, PullRequest, PullRequestComment
from environments.models import Environment, Interface, Project, RunKind, WebhookDelivery
from environments.refused import Refused

logger = logging.getLogger("preview_portal.webhooks")

KEEP_DELIVERIES = timedelta(days=30)
DEPLOY_ACTIONS = frozenset({"opened", "reopened", "ready_for_review", "synchronize"})


@dataclass(frozen=True)
class Trust:
    """Whose secret signed the delivery."""

    portal: bool
    projects: frozenset[int]

    def covers(self, project: Project) -> bool:
        return project.pk in self.projects if project.webhook_secret else self.portal


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
    pull_request = events.pull_request(payload) if event == "pull_request" else None
    comment = events.pull_request_comment(payload) if event == "issue_comment" else None
    number = pull_request.number if pull_request else comment.number if comment else None
    prepared = _prepare(event, payload, pull_request, comment, trust)
    with transaction.atomic():
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    delivery_id=delivery_id, digest=digest, event=event,
                    action=str(payload.get("action") or "")[:50],
                    repository=events.repository(payload).lower()[:200],
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
        return commands.prepare(comment, lambda repository: _trusted_projects(repository, trust))
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
    repository = events.repository(payload)
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
    if events.closed_earlier(pull_request):
        return Prepared(lambda delivery: _ignored_as_closed(pull_request))
    plans = [(project, _deploy_plan(project, pull_request)) for project in trusted]
    held = _held_for_approval(trusted, pull_request)

    def apply(delivery: WebhookDelivery) -> Outcome:
        # Again: a `closed` delivery may have been recorded while git was asked.
        if events.closed_earlier(pull_request):
            return _ignored_as_closed(pull_request)
        status, result = _accepted([_deploy(project, pull_request, plan)
                                    for project, plan in plans])
        if held:
            result["reply"] = _held_text(pull_request, held)
        return status, result

    return Prepared(apply, statuses.reply_on(pull_request.repository, pull_request.number)
                    if held else None)


def _retitled(projects: list[Project], pull_request: PullRequest) -> Outcome:
    titled = services.title_pull_request(projects, pull_request.number, pull_request.title)
    return 200, {"status": "accepted" if titled else "ignored", "environments": titled}


def _accepted(results: list[dict[str, Any]]) -> Outcome:
    busy = any("environment" in r for r in results)
    return (202 if busy else 200), {"status": "accepted" if busy else "ignored",
                                    "results": results}


def _ignored_as_closed(pull_request: PullRequest) -> Outcome:
    return 200, {"status": "ignored",
                 "detail": f"pull request #{pull_request.number} was closed by an earlier "
                           "delivery"}


def _deploy_plan(project: Project, pull_request: PullRequest) -> services.Target | str:
    """The checked commit to deploy for the project, or why it is skipped."""
    if pull_request.from_fork and not project.deploy_forks:
        return ("from a fork: its code would run with this project's database and settings "
                "(the project's deploy_forks allows it; "
                f"`{commands.DEPLOY_COMMAND}` from someone with write access deploys its head "
                "once)")
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
            f"comment `{commands.DEPLOY_COMMAND}` to deploy this one.")


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


def _projects(repository: str) -> QuerySet[Project]:
    if not repository:  # iexact="" would match every project without a repository
        return Project.objects.none()
    return Project.objects.filter(github_repository__iexact=repository)
