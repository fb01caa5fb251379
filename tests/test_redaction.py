"""Credentials never reach what people read: a repository URL's token is not shown by the API nor
written to run logs; a failing component's output reaches the status, Slack and the pull request
with its DB password and env values masked."""

import dataclasses
import os
from pathlib import Path

import pytest

from environments import redact, services, tokens
from environments.backends import get
from environments.models import Environment, EnvironmentStatus, Interface, LogLine, Project
from tests.support.api_client import call
from tests.support.fake_slack import text_of
from tests.support.runs import launch

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "ghs_16C7e42F292c6912E7710c838347Ae178B4a"
SHOWN = "https://github.example/acme/shop.git"
WITH_TOKEN = f"https://x-access-token:{TOKEN}@github.example/acme/shop.git"
PASSWORD = "s3cret-pool-password"
API_KEY = "sk_live_51HzQ2eZvKYlo2C"


@pytest.fixture
def repository_with_token(monkeypatch: pytest.MonkeyPatch, demo_project: Project,
                          demo_repo: Path) -> Project:
    """The demo project read through a URL holding a token; git (and only git) is told that
    URL is the demo repository."""
    for name, value in {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{demo_repo}.insteadOf",
                        "GIT_CONFIG_VALUE_0": WITH_TOKEN}.items():
        monkeypatch.setenv(name, value)
    demo_project.repository = WITH_TOKEN
    demo_project.save()
    return demo_project


@pytest.mark.parametrize(("url", "shown"), [
    (WITH_TOKEN, SHOWN),
    (f"https://{TOKEN}@github.example/acme/shop.git", SHOWN),
    ("ssh://git@github.example:22/acme/shop.git", "ssh://github.example:22/acme/shop.git"),
    ("git@github.example:acme/shop.git", "git@github.example:acme/shop.git"),
    ("/srv/git/shop.git", "/srv/git/shop.git"),
    (f"fatal: repository '{WITH_TOKEN}/' not found", f"fatal: repository '{SHOWN}/' not found"),
])
def test_userinfo_drops_the_credentials_of_urls_and_leaves_the_rest(url, shown):
    assert redact.userinfo(url) == shown


def test_the_api_shows_qa_the_repository_without_its_token(client, repository_with_token, qa):
    response = call(client, "get", "/projects", tokens.create(qa))

    assert response.status_code == 200
    assert response.json()[0]["repository"] == SHOWN
    assert TOKEN not in response.content.decode()


def test_run_logs_name_the_repository_without_its_token(repository_with_token, pool_of,
                                                        developer):
    pool_of(1)
    environment = launch(repository_with_token, "main", developer)
    lines = list(LogLine.objects.filter(step__run__environment=environment)
                 .values_list("text", flat=True))

    assert any(SHOWN in line for line in lines), lines
    assert not [line for line in lines if TOKEN in line]


def test_a_git_error_quoting_the_url_is_shown_without_its_token(
        client, repository_with_token, qa, tmp_path, monkeypatch):
    # Some git versions and remote helpers quote the URL as given in their messages.
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"fatal: repository '$*' not found\" >&2\nexit 128\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")

    response = call(client, "get", "/projects/demo/branches", tokens.create(qa))

    assert response.status_code == 502
    assert SHOWN in response.json()["error"]
    assert TOKEN not in response.content.decode()


@pytest.fixture
def pool_password(monkeypatch: pytest.MonkeyPatch) -> str:
    """The pool hands out a password, as the MySQL pool does (after the fixtures that change
    settings: a settings change makes a new pool)."""
    pool = get("pool")
    connection_of = pool.connection
    monkeypatch.setattr(pool, "connection",
                        lambda *args: dataclasses.replace(connection_of(*args), password=PASSWORD))
    return PASSWORD


def test_a_component_printing_its_secrets_as_it_dies_fails_with_them_masked(
        demo_project, pool_of, developer, github, slack, pool_password):
    pool_of(1)
    demo_project.components.filter(name="web").update(
        env_vars={"ROLE": "web", "PAYMENTS_KEY": API_KEY},
        start_command='echo "connecting as $DB_PASSWORD with $PAYMENTS_KEY" >&2; exit 3',
    )
    services.launch(demo_project, "main", actor=developer, interface=Interface.CLI,
                    pull_request=7)
    environment = Environment.objects.get()
    slack_text = text_of(slack.payloads("chat.update")[-1])
    [comment] = github.comments.values()
    said = [environment.status_detail, environment.runs.get().error, slack_text, comment,
            *(status["description"] for _, status in github.statuses()),
            *LogLine.objects.filter(step__run__environment=environment)
            .values_list("text", flat=True)]

    assert environment.status == EnvironmentStatus.FAILED
    masked = "connecting as **** with ****"
    assert masked in environment.status_detail
    assert masked in slack_text and masked in comment
    assert not [text for text in said if PASSWORD in text or API_KEY in text]
