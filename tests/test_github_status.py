"""What a pull request is told, against a local server speaking GitHub's REST endpoints: a
pending then a final commit status, and one comment edited in place with URLs, database, smoke
report and step timings. GitHub's errors are logged on the run and never fail the deploy."""

import re
from pathlib import Path

import pytest

from environments import git, pipeline, services
from environments.models import Environment, EnvironmentStatus, Interface, LogLine
from tests.support.commits import commit_on
from tests.support.deliveries import deliver, pointed_at
from tests.support.fake_github import TOKEN

pytestmark = pytest.mark.django_db(transaction=True)
BRANCH = "feature/checkout"
TIMING_ROW = re.compile(r"^\|( \d+\.\d s \|){6}$", re.MULTILINE)


def open_pull_request(client, repo: Path, action: str = "opened") -> Environment:
    sha = git.resolve(str(repo), BRANCH)
    response = deliver(client, "pull_request", pointed_at(f"pull_request.{action}", BRANCH, sha))
    assert response.status_code == 202, response.content
    return Environment.objects.latest("id")


def test_statuses_go_pending_then_success_and_one_comment_is_edited_in_place(
        client, settings, demo_project, demo_repo, pool_of, github):
    pool_of(1)
    environment = open_pull_request(client, demo_repo)
    page = f"{settings.PORTAL_BASE_URL}/environments/{environment.pk}"

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert [(sha, s["state"], s["target_url"]) for sha, s in github.statuses()] == [
        (environment.commit, "pending", page),
        (environment.commit, "success", environment.urls["web"]),
    ]
    assert {s["context"] for _, s in github.statuses()} == {"preview-portal/demo"}
    calls = github.comment_calls()
    assert [c.method for c in calls] == ["POST", "PATCH"]
    assert calls[0].path == "/repos/preview-portal/demo/issues/2/comments"
    (comment_id, body), = github.comments.items()
    assert calls[1].path == f"/repos/preview-portal/demo/issues/comments/{comment_id}"
    assert "**ready** at `" + environment.commit[:7] + "`" in body
    assert environment.urls["web"] in body and environment.urls["api"] in body
    assert "| database | `preview_01.sqlite3` |" in body
    assert f"{settings.PORTAL_BASE_URL}/reports/" in body
    assert "| queue | lease | apply | rollout | smoke | total |" in body
    assert TIMING_ROW.search(body), body

    pushed = commit_on(demo_repo, BRANCH, "banner.txt", "Demo shop — status test\n")
    deliver(client, "pull_request", pointed_at("pull_request.synchronize", BRANCH, pushed))

    assert [(sha, s["state"]) for sha, s in github.statuses()][2:] == [
        (pushed, "pending"), (pushed, "success")]
    assert [c.method for c in github.comment_calls()] == ["POST"] + ["PATCH"] * 3
    assert list(github.comments) == [comment_id]
    assert "**ready** at `" + pushed[:7] + "`" in github.comments[comment_id]

    deliver(client, "pull_request", pointed_at("pull_request.closed", BRANCH, pushed))

    assert len(github.statuses()) == 4  # a closed pull request keeps its last verdict
    assert "**torn_down**" in github.comments[comment_id]
    assert list(github.comments) == [comment_id]


@pytest.mark.parametrize(("fail_with", "token", "code"),
                         [(500, TOKEN, "HTTP 500"), (None, "revoked-token", "HTTP 401")])
def test_github_errors_are_logged_on_the_run_and_the_deploy_still_ends_ready(
        client, settings, demo_project, demo_repo, pool_of, github, fail_with, token, code):
    pool_of(1)
    github.fail_with = fail_with
    settings.PORTAL_GITHUB_TOKEN = token

    environment = open_pull_request(client, demo_repo)
    lines = list(LogLine.objects.filter(step__run__environment=environment)
                 .values_list("text", flat=True))

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert environment.runs.get().error == ""
    problems = [line for line in lines if line.startswith("GitHub ")]
    assert len(problems) == 4, lines  # status and comment, at the start and at the end
    assert all(code in line and "the run goes on" in line for line in problems)
    assert github.comments == {}


def test_nothing_is_sent_for_an_environment_without_a_pull_request(
        demo_project, pool_of, developer, github):
    pool_of(1)
    environment = services.launch(demo_project, BRANCH, actor=developer,
                                  interface=Interface.WEB)
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.READY
    assert github.calls == []


def test_a_deleted_comment_is_posted_again(client, demo_project, demo_repo, pool_of, github):
    pool_of(1)
    environment = open_pull_request(client, demo_repo)
    github.comments.clear()  # someone deleted it on GitHub

    services.redeploy(environment, actor=None, interface=Interface.WEBHOOK)
    environment.refresh_from_db()

    assert [c.method for c in github.comment_calls()] == ["POST", "PATCH", "PATCH", "POST",
                                                          "PATCH"]
    assert list(github.comments) == [environment.github_comment_id]


def test_a_failed_deploy_is_a_failure_linking_the_portal(
        client, settings, demo_project, demo_repo, pool_of, github):
    pool_of(1)
    sha = git.resolve(str(demo_repo), "broken/crash-on-start")
    deliver(client, "pull_request",
            pointed_at("pull_request.opened", "broken/crash-on-start", sha))
    environment = Environment.objects.get()
    page = f"{settings.PORTAL_BASE_URL}/environments/{environment.pk}"

    assert environment.status == EnvironmentStatus.FAILED
    assert [(s["state"], s["target_url"]) for _, s in github.statuses()] == [
        ("pending", page), ("failure", page)]
    assert github.statuses()[-1][1]["description"].startswith("rollout failed")
    body, = github.comments.values()
    assert "**failed** at" in body
    assert "```\nrollout failed" in body and "crash-on-start is set on this branch" in body


def test_a_pull_request_reopened_during_its_teardown_keeps_its_one_comment(
        client, demo_project, demo_repo, pool_of, github, monkeypatch):
    pool_of(2)
    open_pull_request(client, demo_repo)
    sha = git.resolve(str(demo_repo), BRANCH)
    delete_workload = pipeline.STEP_FUNCTIONS["delete_workload"]

    def reopen_meanwhile(ctx: pipeline.Context) -> None:
        deliver(client, "pull_request", pointed_at("pull_request.reopened", BRANCH, sha))
        delete_workload(ctx)

    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "delete_workload", reopen_meanwhile)
    deliver(client, "pull_request", pointed_at("pull_request.closed", BRANCH, sha))
    new = Environment.objects.latest("id")

    assert new.status == EnvironmentStatus.READY
    (comment_id, body), = github.comments.items()
    assert new.github_comment_id == comment_id
    # The new environment came up inside the old one's teardown, which ended after it.
    assert "**ready**" in body
