"""The JSON API as CI calls it (DESIGN.md, "JSON API"): a bearer token, JSON in and out, errors
as {"error", "detail"} with a 4xx and nothing changed."""

import dataclasses
import io
import re

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from environments import demo, git, services, tokens
from environments.backends import get
from environments.models import (
    AuditEvent,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Run,
    RunKind,
    SlotState,
    SmokeAttempt,
)
from tests.support.api_client import call, ready_environment

SECRET = "s3cret-pool-password"


@pytest.fixture
def dev_token(developer) -> str:
    return tokens.create(developer)


@pytest.fixture
def secret_pool_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool hands out a password, as the MySQL pool does: the API must never show it."""
    pool = get("pool")
    connection_of = pool.connection
    monkeypatch.setattr(
        pool, "connection",
        lambda *args: dataclasses.replace(connection_of(*args), password=SECRET),
    )


def nothing_created() -> bool:
    return not (Environment.objects.exists() or Run.objects.exists()
                or AuditEvent.objects.exists())


@pytest.mark.django_db(transaction=True)
def test_launch_reaches_ready_with_urls_database_runs_and_smoke_but_no_password(
        client, demo_project, pool_of, dev_token, secret_pool_password):
    pool_of(1)

    response = call(client, "post", "/environments", dev_token,
                    {"project": "demo", "branch": demo.UNICODE_BRANCH, "pull_request": 12})

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == EnvironmentStatus.READY, body["status_detail"]
    assert (body["project"], body["branch"], body["pull_request"]) == (
        "demo", demo.UNICODE_BRANCH, 12)
    assert re.fullmatch(r"[0-9a-f]{40}", body["commit"])
    assert set(body["urls"]) == {"web", "api"}
    assert body["database"] == {"slot": "preview_01", "name": "preview_01.sqlite3", "host": ""}
    assert [(r["kind"], r["status"]) for r in body["runs"]] == [("deploy", "succeeded")]
    assert body["smoke"]["status"] == "passed"
    assert (body["smoke"]["passed"], body["smoke"]["failed"]) == (7, 0)
    assert body["smoke"]["report_url"].startswith(settings.PORTAL_BASE_URL + "/reports/")
    assert body["owner"] == "dev"
    assert body["queue_position"] is None
    assert body["links"] == {
        "self": f"{settings.PORTAL_BASE_URL}/api/v1/environments/{body['id']}",
        "page": f"{settings.PORTAL_BASE_URL}/environments/{body['id']}",
    }
    content = response.content.decode()
    assert SECRET not in content
    assert "password" not in content.lower()
    assert "sqlite:///" not in content  # no DSN either
    assert AuditEvent.objects.get(action="launch").interface == Interface.API


@pytest.mark.django_db(transaction=True)
def test_delete_tears_the_environment_down(client, demo_project, pool_of, dev_token):
    pool_of(1)
    launched = call(client, "post", "/environments", dev_token,
                    {"project": "demo", "branch": "main"}).json()

    response = call(client, "delete", f"/environments/{launched['id']}", dev_token)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == EnvironmentStatus.TORN_DOWN
    assert (body["urls"], body["database"]) == ({}, None)
    assert [r["kind"] for r in body["runs"]] == ["teardown", "deploy"]
    assert DbSlot.objects.get().state == SlotState.FREE
    assert call(client, "get", "/environments", dev_token).json() == []
    torn_down = call(client, "get", "/environments?status=torn_down", dev_token).json()
    assert [e["id"] for e in torn_down] == [launched["id"]]
    again = call(client, "delete", f"/environments/{launched['id']}", dev_token)
    assert again.status_code == 409
    assert "already torn down" in again.json()["error"]


def test_launching_a_live_branch_again_returns_the_same_environment(
        client, demo_project, pool_of, dev_token):
    pool_of(1)
    request = {"project": "demo", "branch": "feature/checkout"}

    first = call(client, "post", "/environments", dev_token, request)
    second = call(client, "post", "/environments", dev_token, request)

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] == second.json()["id"]
    assert Environment.objects.count() == 1
    assert [e.action for e in AuditEvent.objects.order_by("id")] == ["launch", "redeploy"]


@pytest.mark.parametrize(
    ("body", "raw", "status", "error"),
    [
        ({"project": "shop", "branch": "main"}, None, 404, "no project 'shop'"),
        ({"project": "demo", "branch": "no/such-branch"}, None, 404, "not in the repository"),
        ({"project": "demo", "branch": "bad..name"}, None, 400, "not a valid git branch name"),
        ({"project": "demo", "branch": "main", "commit": "HEAD~1"}, None, 400, "not a commit"),
        ({"project": "demo", "branch": "main", "commit": "0123abc"}, None, 400, "not a commit"),
        ({"project": "demo", "branch": "main", "commit": "a" * 40 + "\n"}, None, 400,
         "not a commit"),
        ({"project": "demo", "branch": "pull/1/head"}, None, 403, "deploy_forks"),
        ({"project": "demo", "branch": 5}, None, 422, "invalid request"),
        ({"project": "demo"}, None, 422, "invalid request"),
        ({"project": "demo", "branch": "main", "pull_request": "twelve"}, None, 422,
         "invalid request"),
        ({"project": "demo", "branch": "b" * 256}, None, 422, "invalid request"),
        (None, '{"project": "demo", "branch": ', 400, "Cannot parse request body"),
        (None, '["demo", "main"]', 422, "invalid request"),
        (None, "", 422, "invalid request"),
    ],
)
def test_a_bad_launch_request_is_a_json_4xx_and_creates_nothing(
        client, demo_project, pool_of, dev_token, body, raw, status, error):
    pool_of(1)

    response = call(client, "post", "/environments", dev_token, body, raw)

    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert set(response.json()) == {"error", "detail"}
    assert error in response.json()["error"]
    assert nothing_created()


def test_a_commit_that_is_not_on_the_branch_is_a_400_and_creates_nothing(
        client, demo_project, demo_repo, pool_of, dev_token):
    """Every commit of the repository (a fork's pull request's too) is in its objects: named
    under another branch, it would deploy unreviewed code under that branch's name."""
    pool_of(1)
    elsewhere = git.resolve(str(demo_repo), demo.UNICODE_BRANCH)

    response = call(client, "post", "/environments", dev_token,
                    {"project": "demo", "branch": "main", "commit": elsewhere})

    assert response.status_code == 400
    assert response.json()["error"] == f"commit {elsewhere} is not on branch 'main' of demo"
    assert nothing_created()


def test_an_earlier_commit_of_the_branch_is_launched_as_asked(
        client, demo_project, demo_repo, pool_of, dev_token):
    pool_of(1)
    earlier = git.resolve(str(demo_repo), "main")  # where feature/checkout branched off

    response = call(client, "post", "/environments", dev_token,
                    {"project": "demo", "branch": "feature/checkout", "commit": earlier})

    assert response.status_code == 202, response.json()
    assert response.json()["commit"] == earlier


@pytest.mark.parametrize("authorization", [None, "Bearer pp_not-a-token", "Token pp_x", "Bearer"])
def test_without_a_valid_token_every_call_is_401(client, db, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}

    response = client.post("/api/v1/environments", data={"project": "demo", "branch": "main"},
                           content_type="application/json", **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert "API token" in response.json()["error"]
    assert nothing_created()


def test_the_token_of_a_deactivated_user_is_401(client, developer, dev_token):
    developer.is_active = False
    developer.save()

    assert call(client, "get", "/projects", dev_token).status_code == 401


def test_projects_list_components_with_env_var_names_but_never_values(
        client, demo_project, qa):
    demo_project.components.filter(name="api").update(env_vars={"ROLE": "api", "API_KEY": SECRET})

    response = call(client, "get", "/projects", tokens.create(qa))

    assert response.status_code == 200
    [project] = response.json()
    assert project["name"] == "demo"
    assert project["github_repository"] == "preview-portal/demo"
    assert [(c["name"], c["port"], c["health_paths"], c["exposed"], c["env_names"])
            for c in project["components"]] == [
        ("web", 8080, ["/healthz"], True, ["ROLE"]),
        ("api", 8080, ["/healthz"], True, ["API_KEY", "ROLE"]),
    ]
    assert SECRET not in response.content.decode()


def test_branches_lists_the_repository_branches_with_their_commits(client, demo_project, qa):
    response = call(client, "get", "/projects/demo/branches", tokens.create(qa))

    assert response.status_code == 200
    branches = {b["name"]: b["commit"] for b in response.json()}
    assert set(branches) == {"main", *demo.BRANCHES}
    assert demo.UNICODE_BRANCH in branches
    assert all(re.fullmatch(r"[0-9a-f]{40}", commit) for commit in branches.values())


def test_branches_of_an_unknown_project_or_unreadable_repository(client, demo_project, qa,
                                                                 tmp_path):
    token = tokens.create(qa)
    unknown = call(client, "get", "/projects/shop/branches", token)
    demo_project.repository = str(tmp_path / "gone")
    demo_project.save()
    unreadable = call(client, "get", "/projects/demo/branches", token)

    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no project 'shop'", "detail": {"project": "shop"}}
    assert unreadable.status_code == 502
    assert "git ls-remote" in unreadable.json()["error"]


def test_environments_filter_by_project_status_and_branch(client, demo_project, pool_of, qa):
    pool_of(3)
    ready = ready_environment(demo_project, "main", None)
    other = ready_environment(demo_project, "feature/checkout", None)
    Environment.objects.filter(pk=other.pk).update(status=EnvironmentStatus.DEGRADED)
    token = tokens.create(qa)

    def ids(query: str) -> list[int]:
        response = call(client, "get", "/environments" + query, token)
        assert response.status_code == 200, response.content
        return [e["id"] for e in response.json()]

    assert ids("") == [other.pk, ready.pk]
    assert ids("?status=ready") == [ready.pk]
    assert ids("?branch=feature/checkout&project=demo") == [other.pk]
    assert ids("?project=shop") == []
    assert call(client, "get", "/environments?status=sleeping", token).status_code == 422


def test_environment_lists_take_the_same_queries_for_one_row_or_many(
        client, demo_project, pool_of, qa):
    pool_of(4)
    token = tokens.create(qa)
    with_history(ready_environment(demo_project, "main", qa))
    with CaptureQueriesContext(connection) as one:
        assert len(call(client, "get", "/environments", token).json()) == 1
    for branch in ("feature/checkout", demo.UNICODE_BRANCH, "broken/crash-on-start"):
        with_history(ready_environment(demo_project, branch, qa))

    with CaptureQueriesContext(connection) as many:
        assert len(call(client, "get", "/environments", token).json()) == 4

    assert len(many) == len(one)


def with_history(environment: Environment) -> None:
    run = Run.objects.create(environment=environment, kind=RunKind.DEPLOY, status="succeeded")
    SmokeAttempt.objects.create(run=run, number=1, passed=1, failed=1, failures=["x"])
    SmokeAttempt.objects.create(run=run, number=2, passed=2, report_key="k/attempt-2.html")


def test_smoke_is_the_last_attempt_of_the_newest_run_that_has_one(
        client, demo_project, pool_of, qa):
    pool_of(1)
    environment = ready_environment(demo_project, "main", qa)
    with_history(environment)
    Run.objects.create(environment=environment, kind=RunKind.SMOKE, status="running")

    body = call(client, "get", f"/environments/{environment.pk}", tokens.create(qa)).json()

    report_url = body["smoke"].pop("report_url")
    assert body["smoke"] == {"status": "passed", "passed": 2, "failed": 0, "errors": 0}
    # Signed as the answer was made: the same link but for the time in its signature.
    assert report_url.split("?")[0] == get("storage").url("k/attempt-2.html").split("?")[0]
    assert [r["kind"] for r in body["runs"]] == ["smoke", "deploy"]


def test_queued_environments_show_their_place_in_the_queue(client, demo_project, pool_of,
                                                           developer, dev_token):
    pool_of(1)
    ready_environment(demo_project, "main", developer)
    for branch in ("feature/checkout", demo.UNICODE_BRANCH):
        services.launch(demo_project, branch, actor=developer, interface=Interface.API)

    body = call(client, "get", "/environments?status=queued", dev_token).json()

    assert {e["branch"]: e["queue_position"] for e in body} == {
        "feature/checkout": 1, demo.UNICODE_BRANCH: 2}


def test_an_unknown_environment_or_endpoint_is_a_json_404(client, dev_token):
    missing = call(client, "get", "/environments/999", dev_token)
    not_an_id = call(client, "post", "/environments/abc/redeploy", dev_token)
    trailing_slash = call(client, "get", "/environments/", dev_token)

    assert missing.status_code == 404
    assert missing.json() == {"error": "no environment 999", "detail": {"id": 999}}
    assert not_an_id.status_code == 422
    assert not_an_id.json()["error"] == "invalid request"
    assert trailing_slash.status_code == 404
    assert "no trailing slash" in trailing_slash.json()["error"]


def test_actions_refused_in_the_current_state_are_409(client, demo_project, pool_of, dev_token):
    pool_of(1)
    environment = ready_environment(demo_project, "main", None)
    Environment.objects.filter(pk=environment.pk).update(status=EnvironmentStatus.PROVISIONING)

    response = call(client, "post", f"/environments/{environment.pk}/smoke", dev_token)

    assert response.status_code == 409
    assert "ready or degraded" in response.json()["error"]
    assert not Run.objects.exists()


def test_pool_shows_each_slot_and_the_counts(client, demo_project, pool_of, qa):
    pool_of(3)
    environment = ready_environment(demo_project, "main", None)

    response = call(client, "get", "/pool", tokens.create(qa))

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("size", "free", "leased", "resetting", "retired")} == {
        "size": 3, "free": 2, "leased": 1, "resetting": 0, "retired": 0}
    assert [(s["name"], s["state"], s["environment"]) for s in body["slots"]] == [
        ("preview_01", "leased", environment.pk), ("preview_02", "free", None),
        ("preview_03", "free", None)]


def test_admin_grows_and_shrinks_the_pool(client, pool_of, admin):
    pool_of(2)
    token = tokens.create(admin)

    grown = call(client, "put", "/pool", token, {"size": 4})
    shrunk = call(client, "put", "/pool", token, {"size": 1})
    negative = call(client, "put", "/pool", token, {"size": -1})

    assert grown.status_code == 200
    assert grown.json()["size"] == grown.json()["free"] == 4
    assert shrunk.status_code == 200
    assert (shrunk.json()["size"], shrunk.json()["retired"]) == (1, 3)
    assert negative.status_code == 422
    assert [e.detail for e in AuditEvent.objects.order_by("id")] == [
        {"size": 4, "added": 2, "retired": 0}, {"size": 1, "added": 0, "retired": 3}]


def test_create_api_token_prints_a_token_that_authenticates(client, developer):
    out = io.StringIO()

    call_command("create_api_token", "dev", stdout=out)

    token = out.getvalue().strip().splitlines()[-1]
    assert call(client, "get", "/projects", token).status_code == 200


def test_openapi_schema_lists_every_path_and_the_docs_page_renders(client, db):
    schema = client.get("/api/v1/openapi.json")
    docs = client.get("/api/v1/docs")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths) == {
        "/api/v1/projects", "/api/v1/projects/{name}/branches", "/api/v1/environments",
        "/api/v1/environments/{id}", "/api/v1/environments/{id}/redeploy",
        "/api/v1/environments/{id}/smoke", "/api/v1/environments/{id}/extend",
        "/api/v1/environments/{id}/qa", "/api/v1/pool", "/api/v1/projects/{name}/dataset",
    }
    assert set(paths["/api/v1/environments/{id}"]) == {"get", "delete"}
    assert set(paths["/api/v1/pool"]) == {"get", "put"}
    assert "202" in paths["/api/v1/environments"]["post"]["responses"]
    assert docs.status_code == 200


# 422 for a field of the wrong type, as for every field of the API; 400 for a body that is not
# JSON at all.
@pytest.mark.parametrize(("raw", "status"), [('{"hours": "abc"}', 422), ("hours=abc", 400)])
def test_extending_by_hours_that_are_not_a_number_is_a_json_4xx_not_a_500(
        client, demo_project, pool_of, developer, dev_token, raw, status):
    pool_of(1)
    environment = ready_environment(demo_project, "main", developer)

    response = call(client, "post", f"/environments/{environment.pk}/extend", dev_token, raw=raw)

    assert response.status_code == status
    assert set(response.json()) == {"error", "detail"}
    if status == 422:
        assert response.json()["detail"][0]["loc"][-1] == "hours"
    assert Environment.objects.get(pk=environment.pk).expires_at is None
    assert not AuditEvent.objects.filter(action="extend").exists()


def test_environment_lists_come_in_pages_with_links_and_a_total(client, demo_project, qa):
    Environment.objects.bulk_create(
        Environment(project=demo_project, branch=f"old/{i}", env_key=f"k{i}",
                    status=EnvironmentStatus.TORN_DOWN)
        for i in range(120)
    )
    newest_first = list(Environment.objects.order_by("-created_at", "-id")
                        .values_list("id", flat=True))
    token = tokens.create(qa)
    base = f"{settings.PORTAL_BASE_URL}/api/v1/environments?status=torn_down"

    first = call(client, "get", "/environments?status=torn_down", token)
    last = call(client, "get", "/environments?status=torn_down&page=3", token)
    everything = call(client, "get", "/environments?status=torn_down&per_page=200", token)
    too_many = call(client, "get", "/environments?status=torn_down&per_page=201", token)

    assert [e["id"] for e in first.json()] == newest_first[:50]
    assert first["X-Total-Count"] == "120"
    assert first["Link"] == f'<{base}&page=2>; rel="next"'
    assert [e["id"] for e in last.json()] == newest_first[100:]
    assert last["Link"] == f'<{base}&page=2>; rel="prev"'
    assert [e["id"] for e in everything.json()] == newest_first
    assert "Link" not in everything
    assert too_many.status_code == 422
    assert too_many.json()["error"] == "invalid request"


def test_the_api_docs_use_only_the_portals_own_static_files(client, db):
    """Swagger UI comes with django-ninja and is served as the portal's own: docs work offline."""
    page = client.get("/api/v1/docs").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert not re.search(r"(?:https?:)?//", page)
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {"swagger-ui-bundle.js", "swagger-ui.css"}
    for asset in assets:
        assert asset.startswith("/static/"), asset
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert b"".join(served.streaming_content), asset
