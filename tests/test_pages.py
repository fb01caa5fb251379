"""The web pages, through the Django test client: who may see and do what, what each page
shows, and that live parts poll only while work is under way."""

import re

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from environments import dbpool, demo, git, naming, services, views
from environments.backends import get
from environments.models import (
    AuditEvent,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    RunKind,
    RunStatus,
    SlotState,
)
from tests.support.clients import POLL, client_for


def make_environment(project: Project, branch: str, status: str = EnvironmentStatus.READY,
                     owner=None, **fields) -> Environment:
    """An environment row as the pipeline would leave it, without running the pipeline."""
    return Environment.objects.create(
        project=project, branch=branch, status=status, owner=owner,
        env_key=naming.env_key(project.name, branch), queued_at=timezone.now(), **fields,
    )


def page_urls(environment: Environment) -> list[str]:
    pk = environment.pk
    return [
        reverse("dashboard"), reverse("launch"),
        reverse("branch_options", args=[environment.project.name]),
        reverse("environment", args=[pk]), reverse("environment_live", args=[pk]),
        reverse("environment_logs", args=[pk, "web"]),
    ]


@pytest.fixture
def ready_env(demo_project, developer) -> Environment:
    return make_environment(demo_project, "main", owner=developer,
                            urls={"web": "http://127.0.0.1:9/"})


# Who may do what.

def test_every_page_sends_anonymous_visitors_to_the_login_page(ready_env):
    for url in page_urls(ready_env):
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next="), url


def test_an_htmx_poll_without_a_session_sends_the_whole_tab_to_login(ready_env):
    response = Client().get(reverse("environment_live", args=[ready_env.pk]),
                            headers={"HX-Request": "true"})

    assert response.status_code == 204
    assert response["HX-Redirect"].startswith(reverse("login"))


def test_a_user_without_a_role_gets_403_on_every_page(ready_env, outsider):
    client = client_for(outsider)
    for url in page_urls(ready_env):
        assert client.get(url).status_code == 403, url
    response = client.post(reverse("environment_teardown", args=[ready_env.pk]))
    assert response.status_code == 403
    assert "no portal role" in client.get(reverse("dashboard")).content.decode()


def test_qa_sees_everything_and_reruns_smoke_but_cannot_launch_or_tear_down(ready_env, qa):
    client = client_for(qa)
    page = client.get(reverse("environment", args=[ready_env.pk])).content.decode()

    assert "Rerun smoke checks" in page
    assert "Tear down" not in page and "Redeploy" not in page
    assert "Launch preview" not in client.get(reverse("dashboard")).content.decode()
    assert client.get(reverse("launch")).status_code == 403
    for name in ("environment_teardown", "environment_redeploy"):
        assert client.post(reverse(name, args=[ready_env.pk])).status_code == 403
    assert not ready_env.runs.exists()


def test_mutation_urls_answer_get_with_405(ready_env, developer):
    client = client_for(developer)
    for name in ("environment_redeploy", "environment_teardown", "environment_smoke"):
        assert client.get(reverse(name, args=[ready_env.pk])).status_code == 405


def test_a_post_without_the_csrf_token_is_refused(ready_env, developer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(developer)

    response = client.post(reverse("environment_teardown", args=[ready_env.pk]))

    assert response.status_code == 403
    assert not ready_env.runs.exists()


# Dashboard.

def test_dashboard_lists_live_environments_with_links(demo_project, developer, qa, ready_env):
    make_environment(demo_project, "old", status=EnvironmentStatus.TORN_DOWN)

    page = client_for(qa).get(reverse("dashboard")).content.decode()

    assert reverse("environment", args=[ready_env.pk]) in page
    assert 'href="http://127.0.0.1:9/"' in page
    assert ">dev<" in page
    assert ">old<" not in page


def test_dashboard_filters_by_project_status_branch_and_owner(demo_project, developer, qa):
    other = Project.objects.create(name="shop", repository="/nowhere")
    make_environment(demo_project, "feature/checkout", owner=developer)
    make_environment(demo_project, "feature/search", status=EnvironmentStatus.FAILED, owner=qa)
    make_environment(other, "main", owner=developer)
    client = client_for(qa)

    def branches(**query: str) -> set[str]:
        page = client.get(reverse("dashboard"), query).content.decode()
        return set(re.findall(r'class="branch" href="[^"]+">([^<]+)<', page))

    assert branches() == {"feature/checkout", "feature/search", "main"}
    assert branches(project="shop") == {"main"}
    assert branches(status="failed") == {"feature/search"}
    assert branches(branch="FEATURE/") == {"feature/checkout", "feature/search"}
    assert branches(owner="dev") == {"feature/checkout", "main"}
    assert branches(project="demo", owner="dev") == {"feature/checkout"}


def test_dashboard_query_count_does_not_grow_with_rows(demo_project, developer, qa):
    client = client_for(qa)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("dashboard")).status_code == 200
        return len(captured)

    make_environment(demo_project, "a", owner=developer, status=EnvironmentStatus.QUEUED)
    few = queries()
    for n in range(6):
        status = EnvironmentStatus.QUEUED if n % 2 else EnvironmentStatus.READY
        make_environment(demo_project, f"b{n}", owner=qa if n % 3 else developer, status=status)
    assert queries() == few


def test_dashboard_pages_keep_the_filters_and_the_poll_keeps_the_page(demo_project, qa,
                                                                      monkeypatch):
    monkeypatch.setattr(views, "DASHBOARD_PAGE", 2)
    for n in range(5):
        make_environment(demo_project, f"feature/{n}", status=EnvironmentStatus.PROVISIONING)
    make_environment(demo_project, "main")
    client = client_for(qa)

    first = client.get(reverse("dashboard"), {"branch": "feature"}).content.decode()
    assert re.findall(r'class="branch"[^>]*>([^<]+)<', first) == ["feature/4", "feature/3"]
    assert "1–2 of 5 · page 1 of 3" in first
    assert 'href="?branch=feature&amp;page=2" rel="next"' in first
    second = client.get(reverse("dashboard"), {"branch": "feature", "page": "2"},
                        headers={"HX-Request": "true"}).content.decode()
    assert re.findall(r'class="branch"[^>]*>([^<]+)<', second) == ["feature/2", "feature/1"]
    assert 'hx-get="/?branch=feature&amp;page=2"' in second  # the poll stays on its page
    beyond = client.get(reverse("dashboard"), {"branch": "feature", "page": "9"}).content.decode()
    assert re.findall(r'class="branch"[^>]*>([^<]+)<', beyond) == ["feature/0"]
    assert 'rel="prev"' in beyond and 'rel="next"' not in beyond


def test_dashboard_polls_only_while_an_environment_is_in_progress(demo_project, qa, ready_env):
    client = client_for(qa)
    assert POLL not in client.get(reverse("dashboard")).content.decode()

    make_environment(demo_project, "feature/new", status=EnvironmentStatus.PROVISIONING)
    page = client.get(reverse("dashboard"), {"branch": "feature"}).content.decode()
    rows = client.get(reverse("dashboard"), {"branch": "feature"},
                      headers={"HX-Request": "true"}).content.decode()

    assert 'hx-trigger="every 2s"' in page
    assert "<tbody" in rows and "<thead" not in rows
    assert 'hx-get="/?branch=feature"' in rows
    # Filtered down to the ready one only, nothing is in progress: the partial stops polling.
    settled = client.get(reverse("dashboard"), {"branch": "main"},
                         headers={"HX-Request": "true"}).content.decode()
    assert POLL not in settled


def test_queued_environments_show_their_queue_position(demo_project, developer, qa):
    first = make_environment(demo_project, "one", status=EnvironmentStatus.QUEUED)
    second = make_environment(demo_project, "two", status=EnvironmentStatus.QUEUED)
    client = client_for(qa)

    assert "#2 in queue" in client.get(reverse("dashboard")).content.decode()
    assert dbpool.queue_position(second) == 2
    page = client.get(reverse("environment", args=[first.pk])).content.decode()
    assert "#1 in the queue" in page


def test_a_queued_environment_that_holds_a_slot_is_ahead_of_nobody(demo_project, pool_of, qa):
    pool_of(1)
    leaving = make_environment(demo_project, "one", status=EnvironmentStatus.QUEUED)
    DbSlot.objects.update(state=SlotState.LEASED, environment=leaving)  # its slot came free
    waiting = make_environment(demo_project, "two", status=EnvironmentStatus.QUEUED)
    client = client_for(qa)

    assert dbpool.queue_position(waiting) == 1
    page = client.get(reverse("environment", args=[waiting.pk])).content.decode()
    assert "#1 in the queue" in page
    assert "#1 in queue" in client.get(reverse("dashboard"), {"branch": "two"}).content.decode()


# Launch.

def test_launch_form_offers_the_branches_of_the_repository(demo_project, developer, demo_repo):
    client = client_for(developer)
    form = client.get(reverse("launch"), {"project": "demo", "branch": demo.UNICODE_BRANCH})
    options = client.get(reverse("branch_options", args=["demo"]),
                         {"selected": demo.UNICODE_BRANCH}).content.decode()

    assert form.status_code == 200
    branches_url = reverse("branch_options", args=["demo"])
    assert f'hx-get="{branches_url}?selected=feature/%C3%BCn%C3%AFcode-%E2%9C%A8"' in (
        form.content.decode())
    for branch in ("main", "feature/checkout", demo.UNICODE_BRANCH):
        assert f'<option value="{branch}"' in options
    head = git.resolve(str(demo_repo), demo.UNICODE_BRANCH)
    assert f'<option value="{demo.UNICODE_BRANCH}" selected>{demo.UNICODE_BRANCH} · {head[:7]}' \
        in options
    assert client.get(reverse("branch_options", args=["nope"])).status_code == 404


def test_a_branch_live_in_another_project_is_offered_and_preselected_like_any_other(
        demo_project, developer):
    shop = Project.objects.create(name="shop", repository=demo_project.repository)
    make_environment(shop, "main")

    options = client_for(developer).get(reverse("branch_options", args=["demo"]),
                                        {"selected": "main"}).content.decode()

    assert re.search(r'<option value="main" selected>main · \w{7}</option>', options)
    assert "disabled>Choose a branch" in options and "live in project" not in options


def test_launching_an_unknown_branch_shows_the_error_and_creates_nothing(demo_project,
                                                                        developer):
    response = client_for(developer).post(
        reverse("launch"), {"project": "demo", "branch": "no/such-branch"}
    )

    assert response.status_code == 404
    assert "branch &#x27;no/such-branch&#x27; is not in the repository of demo" in (
        response.content.decode())
    assert not Environment.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_launching_a_branch_deploys_it_and_its_page_shows_the_run(demo_project, pool_of,
                                                                 developer):
    pool_of(1)
    client = client_for(developer)

    response = client.post(reverse("launch"), {"project": "demo", "branch": demo.UNICODE_BRANCH})

    environment = Environment.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("environment", args=[environment.pk])
    page = client.get(response["Location"]).content.decode()
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert "8 of 8 steps done" in page
    assert POLL + ' 1s"' not in page
    assert environment.urls["web"] in page
    assert DbSlot.objects.get().name in page
    assert '<td class="ok">7</td>' in page  # smoke checks passed
    report_key = environment.runs.get().smoke_attempts.get().report_key
    assert get("storage").url(report_key).split("?")[0] + "?signature=" in page
    assert "ready when: /healthz answers 2xx" in page  # the rendered manifests
    assert re.search(r"<td>dev</td>\s*<td>web</td>\s*<td>launch</td>", page)


# One environment.

def test_live_partial_polls_only_while_work_is_in_progress(demo_project, developer):
    environment = make_environment(demo_project, "main", status=EnvironmentStatus.PROVISIONING)
    services.redeploy(environment, actor=developer, interface=Interface.WEB, commit="a" * 40)
    client = client_for(developer)
    live = reverse("environment_live", args=[environment.pk])

    assert 'hx-trigger="every 1s"' in client.get(live).content.decode()
    assert 'hx-trigger="every 1s"' in client.get(
        reverse("environment", args=[environment.pk])).content.decode()

    # Ready, but its latest run is still open: still polling.
    Environment.objects.filter(pk=environment.pk).update(status=EnvironmentStatus.READY)
    assert 'hx-trigger="every 1s"' in client.get(live).content.decode()

    environment.runs.update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    done = client.get(live, headers={"HX-Request": "true"})
    assert POLL not in done.content.decode()
    assert done["HX-Refresh"] == "true"  # once, so the parts outside the live partial catch up


def test_environment_page_shows_the_database_but_never_a_password(ready_env, pool_of, qa):
    pool_of(1)
    DbSlot.objects.update(state=SlotState.LEASED, environment=ready_env)

    page = client_for(qa).get(reverse("environment", args=[ready_env.pk])).content.decode()

    slot = get("pool").connection(DbSlot.objects.get().name)
    assert f"slot <code>{slot.slot}</code> · database <code>{slot.name}</code>" in page
    assert "DB_PASSWORD" not in page and "sqlite:///" not in page


def test_component_logs_refresh_only_while_the_environment_is_active(ready_env, qa):
    client = client_for(qa)
    logs = reverse("environment_logs", args=[ready_env.pk, "web"])

    assert 'hx-trigger="every 3s"' in client.get(logs).content.decode()
    Environment.objects.filter(pk=ready_env.pk).update(status=EnvironmentStatus.TORN_DOWN)
    assert POLL not in client.get(logs).content.decode()
    missing = reverse("environment_logs", args=[ready_env.pk, "nope"])
    assert client.get(missing).status_code == 404


def test_teardown_by_post_tears_down_and_is_in_the_audit_log(
        ready_env, developer, django_capture_on_commit_callbacks):
    client = client_for(developer)
    url = reverse("environment_teardown", args=[ready_env.pk])

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url)

    assert response.status_code == 302
    ready_env.refresh_from_db()
    assert ready_env.status == EnvironmentStatus.TORN_DOWN
    assert ready_env.runs.get().kind == RunKind.TEARDOWN
    page = client.get(response["Location"]).content.decode()
    assert "Tearing down demo:main." in page
    assert re.search(r"<td>dev</td>\s*<td>web</td>\s*<td>teardown</td>", page)
    assert "Tear down</button>" not in page


def test_a_refused_change_is_shown_as_a_message_not_an_error(demo_project, developer):
    environment = make_environment(demo_project, "main", status=EnvironmentStatus.PROVISIONING)

    response = client_for(developer).post(reverse("environment_smoke", args=[environment.pk]))

    assert response.status_code == 302
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert shown == ["smoke checks run on a ready or degraded environment, this one is "
                     "provisioning"]
    assert not environment.runs.exists()


@pytest.mark.parametrize("hours", ["abc", "1e999", "24h"])
def test_extending_by_hours_that_are_not_a_number_is_a_400_not_a_500(ready_env, developer,
                                                                      hours):
    before = Environment.objects.get(pk=ready_env.pk).expires_at

    response = client_for(developer).post(reverse("environment_extend", args=[ready_env.pk]),
                                          {"hours": hours})

    assert response.status_code == 400
    assert response.content.decode() == \
        "hours must be one of the offered choices: 24, 72, 168"
    assert Environment.objects.get(pk=ready_env.pk).expires_at == before
    assert not AuditEvent.objects.filter(action="extend").exists()
