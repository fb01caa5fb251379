"""A local HTTP server speaking the GitHub REST endpoints the portal uses (commit statuses,
issue comments, a collaborator's permission, a pull request), recording every call. It checks
the token as GitHub does, and can be told to answer every call with an error."""

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.web import serving

TOKEN = "test-github-token"
SECRET = "portal-webhook-secret"  # what GitHub signs deliveries with
STATUS = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/statuses/(?P<sha>[0-9a-f]{40})")
NEW_COMMENT = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/issues/(?P<number>\d+)/comments")
COMMENT = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/issues/comments/(?P<id>\d+)")
PULL = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/pulls/(?P<number>\d+)")
PERMISSION = re.compile(r"/repos/(?P<repo>[^/]+/[^/]+)/collaborators/(?P<login>[^/]+)/permission")
# GitHub's legacy `permission` of each role (role_name is the exact one).
LEGACY = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read",
          "read": "read", "none": "none"}


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]


@dataclass
class FakeGitHub:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    comments: dict[int, str] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # login → role on every repository
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)  # number → the API's answer
    fail_with: int | None = None

    def statuses(self) -> list[tuple[str, dict[str, Any]]]:
        """(sha, body) of each status posted, in order."""
        return [(STATUS.fullmatch(c.path)["sha"], c.body) for c in self.calls
                if c.method == "POST" and STATUS.fullmatch(c.path)]

    def comment_calls(self) -> list[Call]:
        return [c for c in self.calls if NEW_COMMENT.fullmatch(c.path) or
                COMMENT.fullmatch(c.path)]

    def answer(self, method: str, path: str, token: str,
               body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append(Call(method, path, body))
        if self.fail_with:
            return self.fail_with, {"message": "fake GitHub was told to fail"}
        if token != f"Bearer {TOKEN}":
            return 401, {"message": "Bad credentials"}
        if method == "POST" and STATUS.fullmatch(path):
            return 201, {"state": body["state"]}
        if method == "POST" and NEW_COMMENT.fullmatch(path):
            comment_id = 1000 + len(self.comments)
            self.comments[comment_id] = body["body"]
            return 201, {"id": comment_id, "body": body["body"]}
        found = PERMISSION.fullmatch(path)
        if method == "GET" and found:
            role = self.roles.get(found["login"], "read")  # a public repository: anyone reads
            return 200, {"permission": LEGACY[role], "role_name": role,
                         "user": {"login": found["login"]}}
        found = PULL.fullmatch(path)
        if method == "GET" and found and int(found["number"]) in self.pulls:
            return 200, self.pulls[int(found["number"])]
        found = COMMENT.fullmatch(path)
        if method == "PATCH" and found and int(found["id"]) in self.comments:
            self.comments[int(found["id"])] = body["body"]
            return 200, {"id": int(found["id"]), "body": body["body"]}
        return 404, {"message": "Not Found"}


@contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            status, answer = fake.answer(self.command, self.path,
                                         self.headers.get("Authorization", ""), body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        fake.url = url
        yield fake
