"""GitHub's REST API: the one place the portal talks to it (commit statuses, pull-request
comments, a collaborator's permission and a pull request's head), with the standard library:
a few endpoints need no SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from environments.backends import BackendError

# Short: the pipeline waits for these calls at the start and end of every run.
TIMEOUT_SECONDS = 5
# GitHub cuts a status description longer than this with an error.
DESCRIPTION_MAX = 140


class NotFound(BackendError):
    """The API answered 404."""


class GitHub:
    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token

    def set_status(self, repository: str, sha: str, state: str, target_url: str,
                   description: str, context: str) -> None:
        """`state`: pending, success, failure or error; a later status of the same context
        replaces it on the pull request."""
        self._call("POST", f"/repos/{repository}/statuses/{sha}", {
            "state": state, "target_url": target_url, "context": context,
            "description": " ".join(description.split())[:DESCRIPTION_MAX],  # one line
        })

    def create_comment(self, repository: str, number: int, body: str) -> int:
        answer = self._call("POST", f"/repos/{repository}/issues/{number}/comments",
                            {"body": body})
        try:
            return int(answer["id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(f"GitHub answered a new comment without its id: {answer}") from exc

    def update_comment(self, repository: str, comment_id: int, body: str) -> bool:
        """False when the comment is gone (someone deleted it)."""
        try:
            self._call("PATCH", f"/repos/{repository}/issues/comments/{comment_id}",
                       {"body": body})
        except NotFound:
            return False
        return True

    def permission(self, repository: str, login: str) -> str:
        """The user's permission on the repository: admin, maintain, write, triage, read or
        none (GitHub answers 404 for a login that is no user: none)."""
        try:
            answer = self._call("GET", f"/repos/{repository}/collaborators/{login}/permission")
        except NotFound:
            return "none"
        # `permission` reads maintain as write and triage as read; `role_name` is exact.
        return str(answer.get("role_name") or answer.get("permission") or "none")

    def pull_request(self, repository: str, number: int) -> dict[str, Any]:
        """The pull request as it is now: its state, and its head's commit, branch and
        repository (an issue_comment delivery names none of them)."""
        return self._call("GET", f"/repos/{repository}/pulls/{number}")

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.api_url + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "Content-Type": "application/json",
                "User-Agent": "preview-portal",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise _http_error(method, path, exc) from exc
        except (OSError, ValueError) as exc:  # unreachable, timed out, or not JSON
            raise BackendError(f"GitHub {method} {path}: {exc}", retryable=True) from exc


def _http_error(method: str, path: str, exc: urllib.error.HTTPError) -> BackendError:
    try:
        message = json.loads(exc.read()).get("message", "")
    except (ValueError, AttributeError):
        message = ""
    text = f"GitHub {method} {path}: HTTP {exc.code}" + (f" {message}" if message else "")
    if exc.code == 404:
        return NotFound(text)
    # 403 with a rate limit and 429 pass with time; 5xx is GitHub's own trouble.
    retryable = exc.code >= 500 or exc.code == 429 or "rate limit" in message.lower()
    return BackendError(text, retryable=retryable)
