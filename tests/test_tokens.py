"""Self-service API tokens: a signed-in person makes one (named, with an optional expiry) on the
tokens page, sees it once, sees its prefix, creation, last use and expiry, and revokes it; the
API refuses a revoked or expired token."""

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from environments import tokens
from environments.models import ApiToken, AuditEvent
from tests.support.api_client import call
from tests.support.live import Portal, log_in, running_portal


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    with running_portal(tmp_path / "portal-var") as running:
        yield running


def api_status(portal: Portal, token: str) -> int:
    return requests.get(portal.url + "/api/v1/environments",
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


@pytest.mark.browser
def test_a_token_made_on_the_page_is_shown_once_works_and_stops_working_when_revoked(
        portal, page):
    from playwright.sync_api import expect

    expiry = (timezone.now() + timedelta(days=30)).date()
    log_in(page, portal)
    page.get_by_role("navigation").get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("GitHub Actions of shop")
    page.get_by_label(re.compile("Expires on")).fill(expiry.isoformat())
    page.get_by_role("button", name="Create token").click()

    token = page.locator("#new-token").input_value()
    assert re.fullmatch(r"pp_[\w-]{43}", token)
    assert api_status(portal, token) == 200
    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)  # shown once
    row = page.locator(f'tr[data-token="{token[:10]}"]')
    assert row.locator("td").nth(0).inner_text() == "GitHub Actions of shop"
    assert row.locator("td").nth(1).inner_text() == f"{token[:10]}…"
    assert "ago" in row.locator("td").nth(3).inner_text()  # last used: just now
    assert row.locator("td").nth(4).inner_text() == f"{expiry} 23:59 UTC"
    assert token not in page.content()

    row.get_by_role("button", name="Revoke").click()

    expect(page.locator(".message-success")).to_contain_text(f"Token {token[:10]}… "
                                                             "(GitHub Actions of shop) revoked")
    expect(page.locator(f'tr[data-token="{token[:10]}"]')).to_have_count(0)
    assert api_status(portal, token) == 401


@pytest.mark.django_db
def test_the_api_refuses_an_expired_or_revoked_token(developer):
    expired = tokens.create(developer, "old", expires_at=timezone.now() - timedelta(seconds=1))
    revoked = tokens.create(developer, "leaked")
    current = tokens.create(developer, "ci", expires_at=timezone.now() + timedelta(hours=1))
    tokens.revoke(developer, ApiToken.objects.get(name="leaked").pk)

    answers = {name: call(Client(), "get", "/environments", token)
               for name, token in (("expired", expired), ("revoked", revoked),
                                   ("current", current))}

    assert {name: r.status_code for name, r in answers.items()} == {
        "expired": 401, "revoked": 401, "current": 200}
    assert set(answers["expired"].json()) == {"error", "detail"}


@pytest.mark.django_db
def test_a_person_sees_and_revokes_only_their_own_tokens_and_it_is_audited(developer, qa):
    tokens.create(developer, "dev's")
    theirs = ApiToken.objects.get(user=developer)
    browser = Client()
    browser.force_login(qa)

    page = browser.get(reverse("tokens")).content.decode()
    refused = browser.post(reverse("token_revoke", args=[theirs.pk]), follow=True)
    made = browser.post(reverse("token_create"), {"name": "qa script", "expires_on": ""},
                        follow=True)

    assert theirs.prefix not in page
    assert "You have no such token" in refused.content.decode()
    assert ApiToken.objects.filter(pk=theirs.pk).exists()
    assert ApiToken.objects.get(user=qa).expires_at is None
    assert 'id="new-token"' in made.content.decode()
    assert [(e.actor, e.action) for e in AuditEvent.objects.all()] == [(qa, "create_api_token")]


@pytest.mark.django_db
def test_a_token_needs_a_name_and_an_expiry_not_in_the_past(developer):
    browser = Client()
    browser.force_login(developer)
    yesterday = (timezone.now() - timedelta(days=1)).date().isoformat()

    unnamed = browser.post(reverse("token_create"), {"name": " "}, follow=True)
    past = browser.post(reverse("token_create"), {"name": "x", "expires_on": yesterday},
                        follow=True)

    assert "Give the token a name" in unnamed.content.decode()
    assert "The expiry date has passed already." in past.content.decode()
    assert not ApiToken.objects.exists()
