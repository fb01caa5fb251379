"""Expiry where the pull request is: the warning is also a comment on it, and a reply
`/preview extend 2d` from someone with write access (checked with GitHub's API) extends the
environment and says so. Against the local fake GitHub, with signed issue_comment deliveries
shaped as GitHub sends them (tests/fixtures/issue_comment.created.json)."""

import copy
import json
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from environments import naming, tasks
from environments.backends import BackendError
from environments.github.client import GitHub
from environments.models import (
    AuditEvent,
    Environment,
    EnvironmentStatus,
    Interface,
    WebhookDelivery,
)
from tests.support.deliveries import REPOSITORY, deliver
from tests.support.fake_github import FakeGitHub

pytestmark = pytest.mark.django_db(transaction=True)
FIXTURE = Path(__file__).parent / "fixtures" / "issue_comment.created.json"
NUMBER = 2
LOGIN = "Codertocat"  # the fixture's commenter
COMMENTS = f"/repos/{REPOSITORY}/issues/{NUMBER}/comments"


@cache
def _fixture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def comment(body: str, action: str = "created", on_pull_request: bool = True) -> dict[str, Any]:
    payload = copy.deepcopy(_fixture())
    payload["action"] = action
    payload["repository"]["full_name"] = REPOSITORY
    payload["comment"]["body"] = body
    if not on_pull_request:
        del payload["issue"]["pull_request"]
    return payload


@pytest.fixture
def github(github: FakeGitHub, settings) -> FakeGitHub:
    """conftest's GitHub, with the expiry settings these tests count on."""
    settings.PORTAL_ENV_MAX_TTL_HOURS = 24 * 7
    settings.PORTAL_EXPIRY_WARNING_HOURS = 4
    return github


@pytest.fixture
def environment(demo_project) -> Environment:
    """A live environment of pull request #2, an hour from expiry (no deploy needed here)."""
    return Environment.objects.create(
        project=demo_project, branch="feature/checkout", pull_request=NUMBER,
        env_key=naming.env_key("demo", "feature/checkout"), status=EnvironmentStatus.READY,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def replies(github: FakeGitHub) -> list[str]:
    return [call.body["body"] for call in github.calls
            if call.method == "POST" and call.path == COMMENTS]


def expiry_of(environment: Environment) -> Any:
    return Environment.objects.get(pk=environment.pk).expires_at


def test_the_expiry_warning_is_also_a_comment_on_the_pull_request(
        github, environment, demo_project):
    Environment.objects.create(  # not of a pull request: warned through the notifier only
        project=demo_project, branch="main", env_key=naming.env_key("demo", "main"),
        status=EnvironmentStatus.READY, expires_at=timezone.now() + timedelta(hours=1))

    tasks.expire_environments()
    tasks.expire_environments()  # warned once

    (body,) = replies(github)
    assert f"expires at **{expiry_of(environment):%Y-%m-%d %H:%M} UTC**" in body
    assert "reply `/preview extend 2d` (or `12h`, `3d`" in body
    assert "at most 7 days from now" in body and "write access" in body
    assert len(github.calls) == 1


@pytest.mark.parametrize("role", ["write", "maintain", "admin"])
def test_a_reply_from_someone_with_write_access_extends_and_says_so(
        client, github, environment, role):
    github.roles[LOGIN] = role
    before = expiry_of(environment)

    answer = deliver(client, "issue_comment", comment("/preview extend 2d\nthanks"))

    assert (answer.status_code, answer.json()["status"]) == (200, "accepted"), answer.json()
    after = expiry_of(environment)
    assert after - before == timedelta(hours=48)
    assert [c.path for c in github.calls if c.method == "GET"] == [
        f"/repos/{REPOSITORY}/collaborators/{LOGIN}/permission"]
    (reply,) = replies(github)
    assert reply == (f"@{LOGIN} the `demo` preview now expires at "
                     f"**{after:%Y-%m-%d %H:%M} UTC**.")
    event = AuditEvent.objects.get(action="extend")
    assert (event.actor, event.actor_name, event.interface) == (
        None, f"{LOGIN} via GitHub", Interface.WEBHOOK)
    assert event.detail["github_login"] == LOGIN and event.detail["hours"] == 48


def test_hours_work_and_the_cap_holds(client, github, environment):
    github.roles[LOGIN] = "write"
    deliver(client, "issue_comment", comment("/preview extend 12h"))
    assert expiry_of(environment) - timezone.now() > timedelta(hours=12.9)

    deliver(client, "issue_comment", comment("/preview extend 999d"))
    left = expiry_of(environment) - timezone.now()
    assert timedelta(days=7) - timedelta(minutes=1) < left <= timedelta(days=7)
    assert "(the most allowed: 7 days from now)" in replies(github)[-1]


def test_without_write_access_the_reply_refuses_and_nothing_changes(
        client, github, environment):
    github.roles[LOGIN] = "triage"
    before = expiry_of(environment)

    answer = deliver(client, "issue_comment", comment("/preview extend 3d"))

    assert (answer.status_code, answer.json()["status"]) == (403, "refused")
    assert expiry_of(environment) == before
    assert not AuditEvent.objects.filter(action="extend").exists()
    (reply,) = replies(github)
    assert "only people with write access to the repository" in reply


def test_a_forged_signature_is_refused_and_changes_nothing(client, github, environment):
    github.roles[LOGIN] = "admin"
    before = expiry_of(environment)

    answer = deliver(client, "issue_comment", comment("/preview extend 2d"), secret="forged")

    assert answer.status_code == 401
    assert expiry_of(environment) == before
    assert github.calls == [] and not WebhookDelivery.objects.exists()


def test_a_replay_is_a_duplicate(client, github, environment):
    github.roles[LOGIN] = "write"
    before = expiry_of(environment)

    first = deliver(client, "issue_comment", comment("/preview extend 1d"), delivery="c-1")
    again = deliver(client, "issue_comment", comment("/preview extend 1d"), delivery="c-1")

    assert first.json()["status"] == "accepted"
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert expiry_of(environment) - before == timedelta(hours=24)
    assert len(replies(github)) == 1


@pytest.mark.parametrize(("body", "action", "on_pull_request"), [
    ("LGTM, ship it", "created", True),
    ("/preview extend 2d", "edited", True),
    ("/preview extend 2d", "created", False),  # on an issue
    ("see /preview extend 2d", "created", True),
], ids=["other-comment", "edited", "issue", "not-at-the-start"])
def test_other_comments_are_acknowledged_and_ignored(client, github, environment, body, action,
                                                     on_pull_request):
    before = expiry_of(environment)
    answer = deliver(client, "issue_comment", comment(body, action, on_pull_request))

    assert (answer.status_code, answer.json()["status"]) == (200, "ignored")
    assert expiry_of(environment) == before and github.calls == []


def test_an_unreadable_duration_gets_the_usage_and_changes_nothing(client, github, environment):
    github.roles[LOGIN] = "write"
    before = expiry_of(environment)

    answer = deliver(client, "issue_comment", comment("/preview extend 2 weeks"))

    assert answer.json()["status"] == "refused"
    assert expiry_of(environment) == before
    assert "`2` is not a duration: reply for example `/preview extend 2d`" in replies(github)[0]


def test_a_pull_request_without_a_live_environment_is_told_so(client, github, environment):
    github.roles[LOGIN] = "write"
    Environment.objects.filter(pk=environment.pk).update(status=EnvironmentStatus.TORN_DOWN)

    answer = deliver(client, "issue_comment", comment("/preview extend 2d"))

    assert answer.json()["status"] == "ignored"
    assert replies(github) == [f"@{LOGIN} this pull request has no live preview to extend."]


def test_without_a_github_token_the_command_is_refused_for_redelivery(
        client, github, environment, settings):
    settings.PORTAL_GITHUB_TOKEN = ""
    answer = deliver(client, "issue_comment", comment("/preview extend 2d"))

    assert answer.status_code == 503 and "PORTAL_GITHUB_TOKEN" in answer.json()["error"]
    assert not WebhookDelivery.objects.exists()  # GitHub's "Redeliver" works once it is set


def test_github_is_asked_and_answered_outside_the_deliverys_transaction(
        client, github, environment, monkeypatch):
    """SQLite has one writer: a delivery must not hold it while GitHub answers."""
    github.roles[LOGIN] = "write"
    in_transaction = {}
    for name in ("permission", "create_comment"):
        def spy(*args: object, name: str = name, call: object = getattr(GitHub, name)) -> object:
            in_transaction[name] = connection.in_atomic_block
            return call(*args)

        monkeypatch.setattr(GitHub, name, spy)

    answer = deliver(client, "issue_comment", comment("/preview extend 2d"))

    assert answer.json()["status"] == "accepted"
    assert in_transaction == {"permission": False, "create_comment": False}


def test_a_reply_that_fails_is_a_502_but_the_extension_stands(
        client, github, environment, monkeypatch):
    github.roles[LOGIN] = "write"
    before = expiry_of(environment)

    def unreachable(*args: object) -> int:
        raise BackendError("GitHub answered 500")

    monkeypatch.setattr(GitHub, "create_comment", unreachable)

    answer = deliver(client, "issue_comment", comment("/preview extend 2d"))

    assert answer.status_code == 502
    assert "could not reply on the pull request" in answer.json()["error"]
    assert expiry_of(environment) - before == timedelta(hours=48)
