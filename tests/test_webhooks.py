"""POST /webhooks/github with GitHub's real payloads (../shared/fixtures/github): signed and
unsigned, replayed, reordered; opened brings an environment up, synchronize redeploys it at the
new commit, closed tears it down, and a forged delivery changes nothing."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from environments import crypto, demo, git, naming, pipeline, probes
from environments.backends import get
from environments.models import (
    AuditEvent,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Project,
    Run,
    RunKind,
    RunStatus,
    SlotState,
    WebhookDelivery,
)
from tests.support.commits import commit_on
from tests.support.deliveries import SECRET, deliver, fixture, pointed_at, raw_fixture, signature

BRANCH = "feature/checkout"


@pytest.fixture(autouse=True)
def portal_secret(settings) -> None:
    settings.PORTAL_GITHUB_WEBHOOK_SECRET = SECRET


def head(repo: Path, branch: str = BRANCH) -> str:
    return git.resolve(str(repo), branch)


def nothing_changed() -> bool:
    return not (Environment.objects.exists() or Run.objects.exists()
                or AuditEvent.objects.exists() or WebhookDelivery.objects.exists())


# Refusals: nothing is created, and the answer says why in the API's error shape.

@pytest.mark.parametrize(
    ("secret", "portal_secret_value", "status"),
    [(None, SECRET, 401), ("not-the-secret", SECRET, 401), (SECRET, "", 403)],
    ids=["unsigned", "forged", "portal-without-secret"],
)
def test_unsigned_forged_or_unconfigured_deliveries_change_nothing(
        client, demo_project, demo_repo, settings, secret, portal_secret_value, status):
    settings.PORTAL_GITHUB_WEBHOOK_SECRET = portal_secret_value
    payload = pointed_at("pull_request.opened", BRANCH, head(demo_repo))

    response = deliver(client, "pull_request", payload, secret=secret)

    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}
    assert nothing_changed()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{\"action\": ", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"payload=%7B%7D", "application/x-www-form-urlencoded", 415),
        (b"{\"action\": \"opened\", \"number\": 2}", "application/json", 400),
    ],
    ids=["malformed-json", "not-an-object", "form-encoded", "no-pull-request"],
)
def test_malformed_deliveries_are_refused_with_a_reason(client, demo_project, body,
                                                        content_type, status):
    response = deliver(client, "pull_request", body, content_type=content_type)

    assert response.status_code == status
    assert response.json()["error"]
    assert nothing_changed()


def test_an_unknown_repository_is_refused(client, demo_project):
    response = deliver(client, "pull_request", raw_fixture("pull_request.opened"))

    assert response.status_code == 404
    assert response.json()["error"] == "no project has github_repository 'Codertocat/Hello-World'"
    assert nothing_changed()


def test_a_delivery_without_its_id_is_refused(client, demo_project):
    response = client.post(
        "/webhooks/github", data=raw_fixture("ping"), content_type="application/json",
        HTTP_X_GITHUB_EVENT="ping",
        HTTP_X_HUB_SIGNATURE_256=signature(raw_fixture("ping")),
    )

    assert response.status_code == 400
    assert nothing_changed()


# Accepted and ignored.

def test_ping_is_answered_and_a_replay_is_a_duplicate(client, db):
    first = deliver(client, "ping", raw_fixture("ping"), delivery="d-1")
    again = deliver(client, "ping", raw_fixture("ping"), delivery="d-1")

    assert first.status_code == 200
    assert first.json()["status"] == "pong"
    assert "Octocoders/Hello-World" in first.json()["detail"]  # no project has it yet
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert WebhookDelivery.objects.count() == 1


def ping(zen: str) -> dict:
    """GitHub's ping, told apart from others by its zen (as GitHub's differ)."""
    return fixture("ping") | {"zen": zen}


def test_deliveries_are_remembered_for_a_month_then_forgotten(client, db):
    deliver(client, "ping", ping("old"), delivery="old")
    deliver(client, "ping", ping("recent"), delivery="recent")
    WebhookDelivery.objects.filter(delivery_id="old").update(
        received_at=timezone.now() - timedelta(days=31))
    WebhookDelivery.objects.filter(delivery_id="recent").update(
        received_at=timezone.now() - timedelta(days=29))

    deliver(client, "ping", ping("new"), delivery="new")

    assert set(WebhookDelivery.objects.values_list("delivery_id", flat=True)) == {"recent", "new"}
    again = deliver(client, "ping", ping("recent"), delivery="recent")
    assert again.json()["status"] == "duplicate"


def test_a_captured_delivery_sent_again_under_a_new_id_is_a_duplicate(
        client, demo_project, demo_repo):
    payload = pointed_at("pull_request.opened", BRANCH, head(demo_repo))

    first = deliver(client, "pull_request", payload, delivery="captured")
    replayed = deliver(client, "pull_request", payload, delivery="made-up")

    assert first.status_code == 202
    assert (replayed.status_code, replayed.json()) == (200, {
        "status": "duplicate", "detail": "delivery captured was handled already"})
    assert list(AuditEvent.objects.values_list("action", flat=True)) == ["launch"]
    assert WebhookDelivery.objects.get().delivery_id == "captured"


def test_a_synchronize_older_than_the_previews_commit_is_ignored(
        client, demo_project, demo_repo):
    older = head(demo_repo)
    newer = commit_on(demo_repo, BRANCH, "banner.txt", "a newer push\n")
    environment = Environment.objects.create(
        project=demo_project, branch=BRANCH, commit=newer, pull_request=2,
        env_key=naming.env_key(demo_project.name, BRANCH), status=EnvironmentStatus.READY,
        expires_at=timezone.now() + timedelta(hours=1))

    late = deliver(client, "pull_request", pointed_at("pull_request.synchronize", BRANCH, older))

    assert late.status_code == 200
    assert late.json()["results"] == [{
        "project": "demo",
        "skipped": f"{older[:12]} is older than the preview's commit {newer[:12]}"}]
    assert not environment.runs.exists()


def test_other_events_and_actions_are_acknowledged_and_ignored(client, demo_project, demo_repo):
    labeled = pointed_at("pull_request.opened", BRANCH, head(demo_repo))
    labeled["action"] = "labeled"

    push = deliver(client, "push", raw_fixture("ping"))
    label = deliver(client, "pull_request", labeled)

    assert (push.status_code, push.json()["status"]) == (200, "ignored")
    assert (label.status_code, label.json()["status"]) == (200, "ignored")
    assert not Environment.objects.exists()


@pytest.mark.parametrize("kind", ["draft", "fork"])
def test_drafts_and_forks_are_not_deployed_unless_the_project_allows(
        client, demo_project, demo_repo, kind):
    payload = pointed_at("pull_request.opened", BRANCH, head(demo_repo))
    if kind == "draft":
        payload["pull_request"]["draft"] = True
    else:
        payload["pull_request"]["head"]["repo"]["full_name"] = "someone/demo-fork"

    response = deliver(client, "pull_request", payload)

    assert response.status_code == 200
    assert f"deploy_{kind}s" in response.json()["results"][0]["skipped"]
    assert not Environment.objects.exists()


def test_opened_delivered_after_closed_is_ignored(client, demo_project, demo_repo):
    sha = head(demo_repo)
    closed = deliver(client, "pull_request", pointed_at("pull_request.closed", BRANCH, sha))
    opened = deliver(client, "pull_request", pointed_at("pull_request.opened", BRANCH, sha))

    assert closed.json()["results"][0]["skipped"] == "no environment to tear down"
    assert opened.status_code == 200
    assert "closed by an earlier delivery" in opened.json()["detail"]
    assert not Environment.objects.exists()


def test_a_project_secret_replaces_the_portal_secret_for_its_repository(
        client, demo_project, demo_repo):
    Project.objects.filter(pk=demo_project.pk).update(webhook_secret=crypto.seal("own-secret"))
    payload = pointed_at("pull_request.opened", BRANCH, head(demo_repo))
    payload["action"] = "labeled"  # verified and routed, but starts nothing

    with_portal_secret = deliver(client, "pull_request", payload)
    with_own_secret = deliver(client, "pull_request", payload, secret="own-secret")

    assert with_portal_secret.status_code == 403
    assert with_own_secret.status_code == 200
    assert WebhookDelivery.objects.count() == 1


def test_every_fixture_is_accepted_as_it_is(client, db, tmp_path):
    """The payloads unchanged, for a project of their repository (Codertocat/Hello-World, branch
    `changes`): each is routed to its action. Runs are not carried out in this test."""
    repo = tmp_path / "hello"
    git.run("init", "--quiet", "--initial-branch=master", str(repo))
    git.run("-C", str(repo), *demo.IDENTITY, "commit", "--quiet", "--allow-empty", "-m", "1")
    git.run("-C", str(repo), "branch", "changes")
    Project.objects.create(name="hello", repository=str(repo),
                           github_repository="Codertocat/Hello-World")
    answers = {}
    for name in ("opened", "synchronize", "closed", "reopened"):
        response = deliver(client, "pull_request", raw_fixture(f"pull_request.{name}"))
        answers[name] = (response.status_code, response.json()["status"])

    assert answers == {name: (202, "accepted") for name in answers}
    environment = Environment.objects.get(status=EnvironmentStatus.TEARING_DOWN)
    assert (environment.branch, environment.commit, environment.pull_request) == (
        "changes", fixture("pull_request.opened")["pull_request"]["head"]["sha"], 2)
    # reopened during the teardown: launched again once it is done.
    assert environment.relaunch["commit"] == environment.commit


# End to end: real git, real processes, runs carried out.

@pytest.mark.django_db(transaction=True)
def test_opened_synchronize_closed_bring_up_redeploy_and_tear_down(
        client, demo_project, demo_repo, pool_of):
    pool_of(1)
    first = head(demo_repo)

    opened = deliver(client, "pull_request",
                     pointed_at("pull_request.opened", BRANCH, first), delivery="opened-1")
    environment = Environment.objects.get()

    assert opened.status_code == 202
    assert opened.json()["results"] == [{"project": "demo", "environment": environment.pk}]
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert (environment.branch, environment.commit, environment.pull_request) == (
        BRANCH, first, 2)
    launched = AuditEvent.objects.get(action="launch")
    assert (launched.interface, launched.actor_name) == ("webhook", "Codertocat via GitHub")

    second = commit_on(demo_repo, BRANCH, "banner.txt", "Demo shop — pushed to the PR\n")
    forged = deliver(client, "pull_request", pointed_at("pull_request.synchronize", BRANCH,
                                                        second), secret="guessed")
    replayed = deliver(client, "pull_request",
                       pointed_at("pull_request.opened", BRANCH, first), delivery="opened-1")

    assert forged.status_code == 401
    assert replayed.json()["status"] == "duplicate"
    assert Run.objects.count() == 1

    synchronized = deliver(client, "pull_request",
                           pointed_at("pull_request.synchronize", BRANCH, second))
    environment.refresh_from_db()

    assert synchronized.status_code == 202
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert environment.commit == second
    assert environment.runs.latest("id").kind == RunKind.REDEPLOY
    assert "pushed to the PR" in probes.get(environment.urls["web"], timeout=5).body.decode()

    closed = deliver(client, "pull_request", pointed_at("pull_request.closed", BRANCH, second))
    environment.refresh_from_db()

    assert closed.status_code == 202
    assert environment.status == EnvironmentStatus.TORN_DOWN
    assert DbSlot.objects.get().state == SlotState.FREE
    assert get("runtime").inventory() == {}


@pytest.mark.django_db(transaction=True)
def test_closed_while_opened_still_deploys_ends_torn_down(
        client, demo_project, demo_repo, pool_of, monkeypatch):
    pool_of(1)
    sha = head(demo_repo)
    dns = pipeline.STEP_FUNCTIONS["dns"]

    def close_meanwhile(ctx: pipeline.Context) -> None:
        deliver(client, "pull_request", pointed_at("pull_request.closed", BRANCH, sha))
        dns(ctx)

    monkeypatch.setitem(pipeline.STEP_FUNCTIONS, "dns", close_meanwhile)
    deliver(client, "pull_request", pointed_at("pull_request.opened", BRANCH, sha))
    environment = Environment.objects.get()

    assert environment.status == EnvironmentStatus.TORN_DOWN
    assert [(r.kind, r.status) for r in environment.runs.order_by("id")] == [
        (RunKind.DEPLOY, RunStatus.CANCELLED), (RunKind.TEARDOWN, RunStatus.SUCCEEDED)]
    assert DbSlot.objects.get().state == SlotState.FREE
    assert get("runtime").inventory() == {}


@pytest.mark.django_db(transaction=True)
def test_two_synchronize_in_a_row_end_at_the_second(
        client, demo_project, demo_repo, pool_of, deferred_runs):
    pool_of(1)
    deliver(client, "pull_request", pointed_at("pull_request.opened", BRANCH, head(demo_repo)))
    deferred_runs()
    second = commit_on(demo_repo, BRANCH, "banner.txt", "second push\n")
    third = commit_on(demo_repo, BRANCH, "banner.txt", "third push\n")

    for sha in (second, third):
        deliver(client, "pull_request", pointed_at("pull_request.synchronize", BRANCH, sha))
    deferred_runs()
    environment = Environment.objects.get()

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert environment.commit == third
    # The second push reached the queued redeploy before it started: one run, at the newest.
    assert [(r.kind, r.commit) for r in environment.runs.order_by("id")][1:] == [
        (RunKind.REDEPLOY, third)]


@pytest.fixture
def ready_pull_request(client, demo_project, demo_repo, pool_of,
                       deferred_runs) -> Iterator[Environment]:
    pool_of(2)
    deliver(client, "pull_request", pointed_at("pull_request.opened", BRANCH, head(demo_repo)))
    deferred_runs()
    environment = Environment.objects.get()
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    yield environment


@pytest.mark.django_db(transaction=True)
def test_reopened_while_tearing_down_comes_back_once_the_teardown_is_done(
        client, demo_repo, ready_pull_request, deferred_runs):
    sha = head(demo_repo)
    deliver(client, "pull_request", pointed_at("pull_request.closed", BRANCH, sha))
    reopened = deliver(client, "pull_request", pointed_at("pull_request.reopened", BRANCH, sha))
    deferred_runs()
    old = Environment.objects.get(pk=ready_pull_request.pk)
    new = Environment.objects.exclude(pk=old.pk).get()

    assert reopened.status_code == 202
    assert old.status == EnvironmentStatus.TORN_DOWN
    assert new.status == EnvironmentStatus.READY, new.status_detail
    assert (new.branch, new.commit, new.pull_request) == (BRANCH, sha, 2)
    assert list(DbSlot.objects.filter(state=SlotState.LEASED)) == [new.slot]
    assert list(get("runtime").inventory()) == [new.env_key]


@pytest.mark.django_db(transaction=True)
def test_closed_reopened_closed_ends_torn_down(client, demo_repo, ready_pull_request,
                                               deferred_runs):
    sha = head(demo_repo)
    for minute, action in enumerate(("closed", "reopened", "closed")):
        payload = pointed_at(f"pull_request.{action}", BRANCH, sha)
        payload["pull_request"]["updated_at"] = f"2019-05-15T15:2{minute}:00Z"  # as GitHub's
        deliver(client, "pull_request", payload)
    deferred_runs()

    assert list(Environment.objects.values_list("status", flat=True)) == [
        EnvironmentStatus.TORN_DOWN]
    assert not DbSlot.objects.filter(state=SlotState.LEASED).exists()
    assert get("runtime").inventory() == {}


@pytest.mark.django_db(transaction=True)
def test_a_fork_allowed_by_the_project_deploys_the_pull_request_head(
        client, demo_project, demo_repo, pool_of):
    """A fork's branch is not in the project's repository: GitHub's refs/pull/<n>/head is."""
    pool_of(1)
    Project.objects.filter(pk=demo_project.pk).update(deploy_forks=True)
    sha = head(demo_repo, demo.UNICODE_BRANCH)
    git.run("-C", str(demo_repo), "update-ref", "refs/pull/2/head", sha)
    payload = pointed_at("pull_request.opened", "main", sha)  # the fork's own branch name
    payload["pull_request"]["head"]["repo"]["full_name"] = "someone/demo-fork"

    response = deliver(client, "pull_request", payload)
    environment = Environment.objects.get()

    assert response.status_code == 202
    assert (environment.branch, environment.commit) == ("pull/2/head", sha)
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert "ünïcode" in probes.get(environment.urls["web"], timeout=5).body.decode()


@pytest.mark.django_db(transaction=True)
def test_the_branch_is_resolved_before_the_deliverys_transaction(
        client, demo_project, demo_repo, monkeypatch, deferred_runs):
    """SQLite has one writer: a delivery must not hold it while git asks the repository."""
    payload = pointed_at("pull_request.opened", BRANCH, head(demo_repo))
    in_transaction = []
    resolve = git.resolve

    def spy(*args: str) -> str | None:
        in_transaction.append(connection.in_atomic_block)
        return resolve(*args)

    monkeypatch.setattr(git, "resolve", spy)
    opened = deliver(client, "pull_request", payload)

    assert opened.status_code == 202
    assert in_transaction == [False]
