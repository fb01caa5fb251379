"""`/preview deploy` on a pull request: someone with write access lets a fork's head in, once, at
that commit and without the project's env values; its next push waits for another approval.
Against the local fake GitHub (permission, the pull request, replies) with signed deliveries
shaped as GitHub sends them."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from environments import demo, git, probes
from environments.github.client import GitHub
from environments.models import AuditEvent, Environment, LogLine, Run
from tests.support.commits import commit_on
from tests.support.deliveries import REPOSITORY, deliver, fixture, pointed_at
from tests.support.fake_github import FakeGitHub

pytestmark = pytest.mark.django_db(transaction=True)
COMMENT_FIXTURE = Path(__file__).parent / "fixtures" / "issue_comment.created.json"
NUMBER = 2  # the fixtures' pull request
LOGIN = "Codertocat"  # the comment fixture's commenter
FORK = "someone/demo-fork"
PULL_HEAD = f"pull/{NUMBER}/head"
COMMENTS = f"/repos/{REPOSITORY}/issues/{NUMBER}/comments"


def comment(body: str) -> dict[str, Any]:
    payload = json.loads(COMMENT_FIXTURE.read_text())
    payload["repository"]["full_name"] = REPOSITORY
    payload["comment"]["body"] = body
    return payload


def on_github(github: FakeGitHub, repo: Path, sha: str, branch: str = "main",
              head_repository: str = FORK) -> None:
    """The pull request as GitHub's API answers it, its head at `sha` (in refs/pull/2/head of
    the project's repository, as GitHub keeps it)."""
    answer = copy.deepcopy(fixture("pull_request.opened")["pull_request"])
    answer.update(state="open", number=NUMBER)
    answer["head"].update(ref=branch, sha=sha)
    answer["head"]["repo"]["full_name"] = head_repository
    answer["base"]["repo"]["full_name"] = REPOSITORY
    github.pulls[NUMBER] = answer
    git.run("-C", str(repo), "update-ref", f"refs/{PULL_HEAD}", sha)


def pushed_to_fork(repo: Path, sha: str) -> dict[str, Any]:
    """A synchronize delivery of the fork's pull request, its head now at `sha`."""
    payload = pointed_at("pull_request.synchronize", "main", sha)
    payload["pull_request"]["head"]["repo"]["full_name"] = FORK
    git.run("-C", str(repo), "update-ref", f"refs/{PULL_HEAD}", sha)
    return payload


def replies(github: FakeGitHub) -> list[str]:
    return [call.body["body"] for call in github.calls
            if call.method == "POST" and call.path == COMMENTS]


def test_a_maintainers_preview_deploy_runs_a_forks_head_without_the_env_values(
        client, github, demo_project, demo_repo, pool_of, settings):
    pool_of(1)
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    github.roles[LOGIN] = "write"
    sha = git.resolve(str(demo_repo), demo.UNICODE_BRANCH)
    on_github(github, demo_repo, sha)

    answer = deliver(client, "issue_comment", comment("/preview deploy"))
    environment = Environment.objects.get()

    assert answer.status_code == 202, answer.json()
    assert (environment.branch, environment.commit, environment.pull_request) == (
        PULL_HEAD, sha, NUMBER)
    assert "ünïcode" in probes.get(environment.urls["web"], timeout=5).body.decode()
    # The api component's ROLE=api never reached it: it answers as the app's default.
    health = probes.get(environment.urls["api"].rstrip("/") + "/healthz", timeout=5)
    assert json.loads(health.body)["role"] == "web"
    assert "ROLE" not in Run.objects.get().rendered
    assert Run.objects.get().approved_by == LOGIN
    launched = AuditEvent.objects.get(action="launch")
    assert (launched.detail["commit"], launched.detail["approved_by"]) == (sha, LOGIN)
    assert LogLine.objects.filter(
        text__contains=f"{sha[:12]} is a fork's commit, approved by @{LOGIN}: its components "
                       "run without the project's env values (ROLE)").exists()
    (reply,) = [text for text in replies(github) if text.startswith("@")]  # not the run's own
    assert reply.startswith(f"@{LOGIN} the `demo` preview is deploying this fork's commit "
                            f"{sha[:12]}, once, without the project's env values.")


def test_a_push_to_the_fork_afterwards_waits_for_a_new_approval(
        client, github, demo_project, demo_repo, deferred_runs):
    github.roles[LOGIN] = "maintain"
    approved = git.resolve(str(demo_repo), "main")
    on_github(github, demo_repo, approved)
    deliver(client, "issue_comment", comment("/preview deploy"))
    git.run("-C", str(demo_repo), "branch", "-f", "fork-push", approved)
    pushed = commit_on(demo_repo, "fork-push", "banner.txt", "pushed by the fork\n")

    answer = deliver(client, "pull_request", pushed_to_fork(demo_repo, pushed))

    assert answer.status_code == 200, answer.json()
    assert list(Run.objects.values_list("commit", flat=True)) == [approved]
    assert Environment.objects.get().commit == approved
    assert replies(github)[-1] == (
        f"{pushed[:12]} was pushed from a fork and is not deployed: the `demo` preview stays at "
        f"{approved[:12]}. A fork's commit is deployed only when someone with write access "
        "approves it: comment `/preview deploy` to deploy this one.")

    on_github(github, demo_repo, pushed)
    again = deliver(client, "issue_comment", comment("/preview deploy\nlooks fine"))

    assert again.status_code == 202, again.json()
    assert Run.objects.get(commit=pushed).approved_by == LOGIN  # the pending run, moved on


@pytest.mark.parametrize("role", ["read", "triage"])
def test_without_write_access_preview_deploy_is_refused_and_nothing_deploys(
        client, github, demo_project, demo_repo, role):
    github.roles[LOGIN] = role
    on_github(github, demo_repo, git.resolve(str(demo_repo), "main"))

    answer = deliver(client, "issue_comment", comment("/preview deploy"))

    assert (answer.status_code, answer.json()["status"]) == (403, "refused")
    assert not (Environment.objects.exists() or Run.objects.exists())
    assert replies(github) == [
        f"@{LOGIN} only people with write access to the repository can deploy its pull "
        "requests' previews; nothing was deployed."]
    assert not [call for call in github.calls if "/pulls/" in call.path]


def test_preview_deploy_of_a_branch_of_the_repository_deploys_its_head_like_a_launch(
        client, github, demo_project, demo_repo, deferred_runs):
    github.roles[LOGIN] = "write"
    sha = git.resolve(str(demo_repo), "feature/checkout")
    on_github(github, demo_repo, sha, branch="feature/checkout", head_repository=REPOSITORY)

    answer = deliver(client, "issue_comment", comment("/preview deploy"))
    environment = Environment.objects.get()

    assert answer.status_code == 202, answer.json()
    assert (environment.branch, environment.commit) == ("feature/checkout", sha)
    assert Run.objects.get().approved_by == ""  # nothing to approve: it gets its env values
    assert replies(github) == [f"@{LOGIN} the `demo` preview is deploying {sha[:12]}."]


def test_git_and_github_are_asked_outside_the_deliverys_transaction(
        client, github, demo_project, demo_repo, deferred_runs, monkeypatch):
    """SQLite has one writer: a delivery must not hold it while git or GitHub answers."""
    github.roles[LOGIN] = "write"
    on_github(github, demo_repo, git.resolve(str(demo_repo), "main"))
    in_transaction: dict[str, bool] = {}

    def spy(owner: object, name: str) -> None:
        call = getattr(owner, name)

        def spied(*args: object) -> object:
            in_transaction[name] = in_transaction.get(name, False) or connection.in_atomic_block
            return call(*args)

        monkeypatch.setattr(owner, name, spied)

    for name in ("permission", "pull_request", "create_comment"):
        spy(GitHub, name)
    spy(git, "resolve")

    answer = deliver(client, "issue_comment", comment("/preview deploy"))

    assert answer.status_code == 202, answer.json()
    assert in_transaction == {"permission": False, "pull_request": False,
                              "create_comment": False, "resolve": False}
