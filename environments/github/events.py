"""What a GitHub delivery says, read from its payload (valid JSON may still lack what GitHub
always sends), and what handling it will do once its questions to git and GitHub are answered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from environments.models import WebhookDelivery
from environments.refused import Refused

Outcome = tuple[int, dict[str, Any]]


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


def closed_earlier(pull_request: PullRequest) -> bool:
    """Delivered out of order: deploying now would leave an environment for a closed pull
    request running until it expires."""
    if pull_request.action == "reopened":
        return False
    last = WebhookDelivery.objects.filter(
        repository=pull_request.repository.lower(), pull_request=pull_request.number,
        action__in=("closed", "reopened"),
    ).order_by("-id").first()
    return last is not None and last.action == "closed"


def repository(payload: dict[str, Any]) -> str:
    return _text(payload, "repository", "full_name", required=False)


def pull_request(payload: dict[str, Any]) -> PullRequest:
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


def pull_request_comment(payload: dict[str, Any]) -> PullRequestComment | None:
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
