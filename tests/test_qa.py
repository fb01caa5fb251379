"""QA's sign-off of the deployed commit: recorded and audited, shown on the environment page,
the dashboard and in the JSON, told to the Slack thread and to the pull request (commit status
`preview/qa`, a line in the comment), and gone once another commit is deployed. And the
dashboard's columns and filters QA works with."""

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from environments import git, services, tokens
from environments.models import AuditEvent, Environment, EnvironmentStatus, Interface, QaState
from tests.support.api_client import call, ready_environment
from tests.support.commits import commit_on
from tests.support.deliveries import deliver, pointed_at
from tests.support.fake_slack import CHANNEL_ID
from tests.support.live import launch_from_form, log_in, running_portal

pytestmark = pytest.mark.django_db(transaction=True)
BRANCH = "feature/checkout"
NOTE = "Checkout works in Firefox and Safari; the coupon field too."


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def open_pull_request(repo: Path) -> Environment:
    sha = git.resolve(str(repo), BRANCH)
    response = deliver(Client(), "pull_request",
                       pointed_at("pull_request.opened", BRANCH, sha))
    assert response.status_code == 202, response.content
    environment = Environment.objects.latest("id")
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    return environment


def sign_off(user, environment: Environment, state: str, note: str = NOTE) -> Client:
    client = client_for(user)
    response = client.post(reverse("environment_qa", args=[environment.pk]),
                           {"state": state, "note": note, "commit": environment.commit})
    assert response.status_code == 302, response.content
    return client


def dashboard_row(client: Client, environment: Environment, query: str = "") -> str:
    page = client.get(reverse("dashboard") + query).content.decode()
    start = page.find(f'data-environment="{environment.pk}"')
    assert start >= 0, page
    return page[start:page.index("</tr>", start)]


def test_a_qa_approval_shows_on_the_dashboard_and_reaches_the_pull_request(
        settings, demo_project, demo_repo, pool_of, github, qa):
    pool_of(1)
    environment = open_pull_request(demo_repo)

    client = sign_off(qa, environment, QaState.APPROVED)

    row = dashboard_row(client, environment)
    assert 'data-qa="approved"' in row
    assert 'href="https://github.com/preview-portal/demo/pull/2"' in row
    assert "#2 Update the README with new information.</a>" in row
    assert environment.commit[:7] in row
    assert "preview_01.sqlite3" in row
    assert 'data-smoke="passed"' in row and f"{settings.PORTAL_BASE_URL}/reports/" in row
    page = client.get(reverse("environment", args=[environment.pk])).content.decode()
    assert 'data-qa="approved"' in page and NOTE in page
    qa_statuses = [(sha, s) for sha, s in github.statuses() if s["context"] == "preview/qa"]
    assert [(sha, s["state"], s["description"]) for sha, s in qa_statuses] == [
        (environment.commit, "success", NOTE)]
    assert qa_statuses[0][1]["target_url"] == \
        f"{settings.PORTAL_BASE_URL}/environments/{environment.pk}"
    (comment,) = github.comments.values()  # the one comment, edited in place
    assert "| QA | **✅ approved** by `qa` at " in comment and NOTE in comment
    assert "**ready** at `" + environment.commit[:7] + "`" in comment
    event = AuditEvent.objects.get(action="qa_signoff")
    assert (event.actor_name, event.interface, event.environment_id) == ("qa", "web",
                                                                          environment.pk)
    assert event.detail == {"state": "approved", "commit": environment.commit, "note": NOTE}


def test_changes_requested_through_the_api_is_a_failure_status_with_the_note_cut_to_140(
        client, demo_project, demo_repo, pool_of, github, admin):
    pool_of(1)
    environment = open_pull_request(demo_repo)
    note = "The coupon field accepts expired coupons. " * 6

    response = call(client, "post", f"/environments/{environment.pk}/qa", tokens.create(admin),
                    {"state": "changes_requested", "note": note})

    assert response.status_code == 200, response.content
    qa = response.json()["qa"]
    assert (qa["state"], qa["note"], qa["by"], qa["commit"]) == (
        "changes_requested", note, admin.username, environment.commit)
    (sha, status), = [(sha, s) for sha, s in github.statuses() if s["context"] == "preview/qa"]
    assert (sha, status["state"]) == (environment.commit, "failure")
    assert len(status["description"]) == 140
    assert status["description"].startswith("The coupon field accepts expired coupons.")
    assert f"**❌ changes requested** by `{admin.username}`" in next(iter(github.comments.values()))
    listed = call(client, "get", "/environments", tokens.create(admin)).json()
    assert listed[0]["qa"]["state"] == "changes_requested"


def test_a_developer_cannot_sign_off_on_the_page_or_through_the_api(
        client, demo_project, pool_of, developer):
    pool_of(1)
    environment = ready_environment(demo_project, "main", developer)
    page = client_for(developer)

    assert "QA sign-off" not in page.get(reverse("environment", args=[environment.pk])).content \
        .decode()
    response = page.post(reverse("environment_qa", args=[environment.pk]),
                         {"state": "approved", "commit": environment.commit})
    assert response.status_code == 403
    response = call(client, "post", f"/environments/{environment.pk}/qa",
                    tokens.create(developer), {"state": "approved", "note": "mine works"})
    assert response.status_code == 403
    assert response.json()["error"] == "only QA or an admin may sign off a commit"
    environment.refresh_from_db()
    assert environment.qa is None
    assert not AuditEvent.objects.filter(action="qa_signoff").exists()


def test_a_redeploy_at_a_new_commit_resets_the_qa_state(
        client, demo_project, demo_repo, pool_of, github, qa):
    pool_of(1)
    environment = open_pull_request(demo_repo)
    browser = sign_off(qa, environment, QaState.APPROVED)
    assert 'data-qa="approved"' in dashboard_row(browser, environment)

    seen = environment.commit
    pushed = commit_on(demo_repo, BRANCH, "banner.txt", "Demo shop — QA reset test\n")
    deliver(client, "pull_request", pointed_at("pull_request.synchronize", BRANCH, pushed))

    environment.refresh_from_db()
    assert environment.commit == pushed
    assert environment.qa is None
    assert 'data-qa=""' in dashboard_row(browser, environment)
    assert dashboard_row(browser, environment, "?qa=none")
    assert f'data-environment="{environment.pk}"' not in browser.get(
        reverse("dashboard") + "?qa=approved").content.decode()
    body = call(client, "get", f"/environments/{environment.pk}", tokens.create(qa)).json()
    assert body["qa"] is None
    comment = next(iter(github.comments.values()))
    assert "**ready** at `" + pushed[:7] + "`" in comment and "| QA |" not in comment
    # A verdict sent for the commit QA looked at before the redeploy is refused, not moved.
    response = browser.post(reverse("environment_qa", args=[environment.pk]),
                            {"state": "approved", "commit": seen}, follow=True)
    assert "not the one deployed now" in response.content.decode()
    environment.refresh_from_db()
    assert environment.qa is None


def test_the_sign_off_is_a_reply_in_the_environments_slack_thread(
        slack, demo_project, pool_of, developer, qa):  # noqa: F811
    pool_of(1)
    environment = ready_environment(demo_project, "main", developer)
    environment.runs.create(kind="deploy", status="succeeded", commit=environment.commit,
                            notify_ref=f"{CHANNEL_ID} 1700000000.000042")

    problems = services.qa_signoff(environment, QaState.CHANGES_REQUESTED, "<b>logo</b> blurry",
                                   actor=qa, interface=Interface.CLI)

    assert problems == []
    (reply,) = slack.payloads("chat.postMessage")
    assert (reply["channel"], reply["thread_ts"]) == (CHANNEL_ID, "1700000000.000042")
    assert reply["text"] == (f"demo:main: QA changes requested by qa at "
                             f"{environment.commit[:7]}: &lt;b&gt;logo&lt;/b&gt; blurry")


def test_dashboard_filters_by_qa_state_and_smoke_result_and_keeps_them_in_the_url(
        demo_project, pool_of, developer, qa):
    pool_of(3)
    approved = ready_environment(demo_project, "feature/approved", developer)
    failing = ready_environment(demo_project, "feature/failing", developer, commit="b" * 40)
    unsmoked = ready_environment(demo_project, "feature/fresh", qa, commit="c" * 40)
    for environment, failed in ((approved, 0), (failing, 2)):
        run = environment.runs.create(kind="deploy", status="succeeded",
                                      commit=environment.commit)
        run.smoke_attempts.create(number=1, passed=5, failed=failed)
    services.qa_signoff(approved, QaState.APPROVED, "", actor=qa, interface=Interface.CLI)
    browser = client_for(qa)

    def listed(query: str) -> set[str]:
        page = browser.get(reverse("dashboard") + query).content.decode()
        return {e.branch for e in (approved, failing, unsmoked)
                if f'data-environment="{e.pk}"' in page}

    assert listed("?qa=approved") == {"feature/approved"}
    assert listed("?qa=none") == {"feature/failing", "feature/fresh"}
    assert listed("?smoke=failed") == {"feature/failing"}
    assert listed("?smoke=passed") == {"feature/approved"}
    assert listed("?smoke=none") == {"feature/fresh"}
    assert listed("?smoke=passed&qa=none") == set()
    assert listed("?mine=1") == {"feature/fresh"}
    assert 'data-smoke="failed"' in dashboard_row(browser, failing)
    assert "5 passed · 2 failed" in dashboard_row(browser, failing)

    page = browser.get(reverse("dashboard") + "?qa=changes_requested&smoke=failed&mine=1"
                       ).content.decode()
    assert '<option value="changes_requested" selected>' in page
    assert "<option selected>failed</option>" in page
    assert 'name="mine" value="1" checked' in page
    assert 'method="get"' in page  # a filtered view is a URL to share


@pytest.mark.browser
def test_an_admin_signs_off_on_the_page_and_the_dashboard_shows_it(page, tmp_path: Path):
    from playwright.sync_api import expect

    with running_portal(tmp_path / "portal-var") as portal:
        log_in(page, portal)
        launch_from_form(page, portal, "main")
        expect(page.locator("[data-status]").first).to_have_attribute(
            "data-status", "ready", timeout=60_000)
        page.reload()  # the sign-off form is offered once a commit is deployed
        page.fill("textarea[name=note]", NOTE)
        page.get_by_role("button", name="Approved").click()

        expect(page.locator("dd[data-qa=approved]")).to_contain_text(NOTE)
        page.screenshot(path=str(tmp_path / "environment.png"), full_page=True)
        page.goto(portal.url + "/?qa=approved&smoke=passed")
        row = page.locator("tr[data-environment]")
        expect(row).to_have_count(1)
        expect(row.locator("td[data-qa=approved]")).to_have_text("approved")
        expect(row.locator("td[data-smoke=passed]")).to_contain_text("passed")
        expect(page.locator("select[name=qa]")).to_have_value("approved")
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
