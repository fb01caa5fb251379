"""Slack notifications through slack_sdk against a local HTTP server that answers the Web API
methods the portal uses like Slack does, and records what it was sent."""

import re

import pytest

from environments import services
from environments.backends import get
from environments.backends.notify import Notice
from environments.models import EnvironmentStatus, Interface
from tests.support.fake_slack import CHANNEL_ID, text_of
from tests.support.runs import launch

pytestmark = pytest.mark.django_db(transaction=True)
def log_of(environment) -> list[str]:
    run = environment.runs.order_by("-id").first()
    return [line.text for step in run.steps.all() for line in step.lines.all()]


def test_a_deploy_posts_as_it_starts_and_updates_that_message_when_ready(
        slack, demo_project, pool_of, developer, settings):
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert [method for method, _ in slack.calls] == ["chat.postMessage", "chat.update"]
    posted, updated = slack.payloads("chat.postMessage")[0], slack.payloads("chat.update")[0]
    assert posted["channel"] == "#previews"
    assert posted["text"] == "demo main: deploy started"
    run = environment.runs.get()
    assert run.notify_ref == f"{CHANNEL_ID} 1700000000.000001"
    # The update goes to the saved message: chat.update wants the channel id and the ts.
    assert (updated["channel"], updated["ts"]) == (CHANNEL_ID, "1700000000.000001")
    assert updated["text"] == "demo main: ready"
    blocks = text_of(updated)
    for url in environment.urls.values():
        assert f"<{url}>" in blocks
    assert "preview_01.sqlite3" in blocks
    report_url = get("storage").url(run.smoke_attempts.get().report_key).split("?")[0]
    assert re.search(rf"<{re.escape(report_url)}\?signature=[^|]+\|Smoke report>", blocks)
    portal_url = f"{settings.PORTAL_BASE_URL}/environments/{environment.pk}"
    assert f"<{portal_url}|Open in the portal>" in blocks
    assert [b["type"] for b in updated["blocks"]][:2] == ["header", "section"]


def test_a_degraded_deploy_updates_the_message_with_why(slack, demo_project, pool_of,
                                                        developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    pool_of(1)
    launch(demo_project, "broken/login", developer)

    updated = slack.payloads("chat.update")[0]
    assert updated["text"] == "demo broken/login: degraded"
    assert "test_login[api POST /login]" in text_of(updated)
    assert "Smoke report" in text_of(updated)


def test_a_failed_deploy_updates_the_message_too(slack, demo_project, pool_of, developer):
    pool_of(1)
    environment = launch(demo_project, "broken/crash-on-start", developer)

    assert environment.status == EnvironmentStatus.FAILED
    assert [method for method, _ in slack.calls] == ["chat.postMessage", "chat.update"]
    updated = slack.payloads("chat.update")[0]
    assert updated["text"] == "demo broken/crash-on-start: failed"
    assert "crash-on-start is set on this branch" in text_of(updated)


def test_a_teardown_posts_its_own_message_and_updates_it(slack, demo_project, pool_of,
                                                         developer):
    pool_of(1)
    environment = launch(demo_project, "main", developer)
    slack.calls.clear()

    services.teardown(environment, actor=developer, interface=Interface.WEB)

    assert [method for method, _ in slack.calls] == ["chat.postMessage", "chat.update"]
    assert slack.payloads("chat.postMessage")[0]["text"] == "demo main: teardown started"
    assert slack.payloads("chat.update")[0]["text"] == "demo main: torn down"


@pytest.mark.parametrize("status, error", [(429, "ratelimited"), (200, "invalid_auth")])
def test_a_slack_error_is_logged_on_the_run_and_the_deploy_still_ends_ready(
        slack, demo_project, pool_of, developer, status, error):
    slack.failures = dict.fromkeys(("chat.postMessage", "chat.update"), (status, error))
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert environment.runs.get().status == "succeeded"
    lines = log_of(environment)
    assert f"notification not sent (Slack answered {error}); the run goes on" in lines
    assert environment.runs.get().notify_ref == ""


def test_an_update_of_a_deleted_message_posts_a_new_one(slack):
    notice = Notice(project="demo", branch="main", status="ready", kind="deploy",
                    portal_url="http://portal/environments/1")
    slack.failures = {"chat.update": (200, "message_not_found")}

    ref = get("notify").send(notice, f"{CHANNEL_ID} 1600000000.000001")

    assert [method for method, _ in slack.calls] == ["chat.update", "chat.postMessage"]
    assert ref == f"{CHANNEL_ID} 1700000000.000002"
