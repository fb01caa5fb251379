"""The dashboard and the API list name an environment's pull request by number and title (as
GitHub's deliveries give it, edits included), linking to it on GitHub."""

import html

import pytest
from django.test import Client
from django.urls import reverse

from environments import git, tokens
from environments.models import Environment
from tests.support.api_client import call
from tests.support.deliveries import REPOSITORY, SECRET, deliver, pointed_at

BRANCH = "feature/checkout"
OPENED_TITLE = "Update the README with new information."  # the fixture's own


@pytest.fixture
def opened(settings, client, demo_project, demo_repo, pool_of, deferred_runs) -> Environment:
    """An environment of pull request #2, its runs left queued (only its names matter)."""
    settings.PORTAL_GITHUB_WEBHOOK_SECRET = SECRET
    pool_of(1)
    payload = pointed_at("pull_request.opened", BRANCH, git.resolve(str(demo_repo), BRANCH))
    assert deliver(client, "pull_request", payload).status_code == 202
    return Environment.objects.get()


def shown(developer, environment: Environment) -> tuple[str, str]:
    """(the dashboard row's pull request cell, the API list's title)."""
    browser = Client()
    browser.force_login(developer)
    page = browser.get(reverse("dashboard")).content.decode()
    start = page.index("<td data-pull-request>", page.index(f'data-environment="{environment.pk}"'))
    listed = call(Client(), "get", "/environments", tokens.create(developer)).json()
    return page[start:page.index("</td>", start)], listed[0]["pull_request_title"]


def test_the_dashboard_links_the_pull_request_by_number_and_title_and_the_api_lists_the_title(
        opened, developer):
    cell, title = shown(developer, opened)

    assert f'href="https://github.com/{REPOSITORY}/pull/2"' in cell
    assert f"#2 {OPENED_TITLE}</a>" in html.unescape(cell)
    assert title == OPENED_TITLE


def test_a_title_edited_on_github_replaces_the_shown_one(client, demo_repo, opened, developer):
    edited = pointed_at("pull_request.opened", BRANCH, git.resolve(str(demo_repo), BRANCH))
    edited["action"] = "edited"
    edited["pull_request"]["title"] = "Checkout: coupons <b>& gift cards</b>"

    response = deliver(client, "pull_request", edited)

    assert response.json() == {"status": "accepted", "environments": [opened.pk]}
    cell, title = shown(developer, opened)
    assert "#2 Checkout: coupons &lt;b&gt;&amp; gift cards&lt;/b&gt;</a>" in cell
    assert title == "Checkout: coupons <b>& gift cards</b>"
