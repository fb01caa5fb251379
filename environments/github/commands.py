"""Commands in a comment on a pull request: `/preview extend 2d` extends its previews, and
`/preview deploy` deploys its head (a fork's once, at that commit, without the project's env
values: its next push waits for another `/preview deploy`). Only from someone with write access
to the repository, which GitHub is asked (before the delivery's transaction), as is the pull
request's head; the reply is posted after it."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings

from environments import services
from environments.backends import BackendError
from environments.github import events, statuses
from environments.github.client import GitHub
from environments.github.events import Outcome, Prepared, PullRequest, PullRequestComment
from environments.models import Environment, Interface, Project, WebhookDelivery
from environments.refused import Refused

# `/preview extend 2d`: hours or days; the number's length only keeps the arithmetic sane, the
# cap (PORTAL_ENV_MAX_TTL_HOURS) is what limits the extension.
EXTEND = re.compile(re.escape(statuses.EXTEND_COMMAND) + r"\b[ \t]*(?P<amount>\S*)")
DEPLOY_COMMAND = "/preview deploy"
DEPLOY = re.compile(re.escape(DEPLOY_COMMAND) + r"\b")
AMOUNT = re.compile(r"(?P<number>[1-9]\d{0,4})(?P<unit>[hd])")
WRITE_ACCESS = frozenset({"admin", "maintain", "write"})
# What GitHub allows in a user's login; anything else (a bot's "name[bot]") has no write access
# to check and must not reach a URL path.
LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")


def prepare(comment: PullRequestComment | None,
            trusted: Callable[[str], list[Project]]) -> Prepared:
    """`trusted`: the projects of a repository the delivery may act on (refused otherwise)."""
    text = comment.body.lstrip() if comment and comment.action == "created" else ""
    extend, deploy = EXTEND.match(text), DEPLOY.match(text)
    if comment is None or not (extend or deploy):
        return Prepared(lambda delivery: (
            200, {"status": "ignored",
                  "detail": f"only new `{statuses.EXTEND_COMMAND} <N>h|d` and "
                            f"`{DEPLOY_COMMAND}` comments on pull requests are used"}))
    projects = trusted(comment.repository)
    github = statuses.client()
    if github is None:
        command = statuses.EXTEND_COMMAND if extend else DEPLOY_COMMAND
        raise Refused(
            f"{command} needs PORTAL_GITHUB_TOKEN, to check the commenter's access and to "
            "reply", 503)
    apply = (_prepare_extend(comment, extend["amount"], projects, github) if extend
             else _prepare_deploy(comment, projects, github))
    return Prepared(apply, statuses.reply_on(comment.repository, comment.number, comment.login))


def _prepare_extend(comment: PullRequestComment, amount: str, projects: list[Project],
                    github: GitHub) -> Callable[[WebhookDelivery], Outcome]:
    """An extend command's effect: (HTTP status, result with the reply on the pull request)."""
    found = AMOUNT.fullmatch(amount)
    if found is None:
        return lambda delivery: (200, {"status": "refused", "reply": (
            f"`{amount or '(nothing)'}` is not a duration: reply for example "
            f"`{statuses.EXTEND_COMMAND} 2d`, `12h` or `3d`.")})
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
        if events.closed_earlier(pull_request):
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
    return events.pull_request({"action": "deploy", "number": comment.number,
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
    cut = (f" (the most allowed: {statuses.hours_text(settings.PORTAL_ENV_MAX_TTL_HOURS)} "
           "from now)" if capped else "")
    return f"the {name} now expires at **{statuses.when(environment.expires_at)}**{cut}."
