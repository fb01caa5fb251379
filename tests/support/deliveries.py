"""GitHub webhook deliveries for tests: the real payloads of ../shared/fixtures/github, signed (or
not) and posted to /webhooks/github as GitHub posts them."""

import copy
import hashlib
import hmac
import json
import uuid
from pathlib import Path
from typing import Any

from django.http import HttpResponse
from django.test import Client

from tests.support.fake_github import SECRET
from tests.support.live import ROOT
from tests.support.tools import require_tool

REPOSITORY = "preview-portal/demo"  # environments.demo.register's github_repository


def fixtures_dir() -> Path:
    # CI lays shared/ beside the clone; a git worktree sits one folder further down.
    for folder in ROOT.parents:
        if (folder / "shared" / "fixtures" / "github").is_dir():
            return folder / "shared" / "fixtures" / "github"
    require_tool(False, "../shared/fixtures/github (GitHub's webhook payloads)")
    raise AssertionError("unreachable")


def raw_fixture(name: str) -> bytes:
    return (fixtures_dir() / f"{name}.json").read_bytes()


def fixture(name: str) -> dict[str, Any]:
    return json.loads(raw_fixture(name))


def pointed_at(name: str, branch: str, sha: str,
               repository: str = REPOSITORY) -> dict[str, Any]:
    """The fixture with only its repository name and head ref/sha changed."""
    payload = copy.deepcopy(fixture(name))
    payload["repository"]["full_name"] = repository
    for side in ("head", "base"):
        payload["pull_request"][side]["repo"]["full_name"] = repository
    payload["pull_request"]["head"]["ref"] = branch
    payload["pull_request"]["head"]["sha"] = sha
    return payload


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(client: Client, event: str, payload: dict[str, Any] | bytes,
            secret: str | None = SECRET, delivery: str | None = None,
            content_type: str = "application/json") -> HttpResponse:
    """POST as GitHub does; `secret=None` sends it unsigned. A new delivery id unless given."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": delivery or str(uuid.uuid4()),
        "HTTP_USER_AGENT": "GitHub-Hookshot/test",
    }
    if secret is not None:
        headers["HTTP_X_HUB_SIGNATURE_256"] = signature(body, secret)
    return client.post("/webhooks/github", data=body, content_type=content_type, **headers)
