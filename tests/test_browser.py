"""A new user's path in headless Chromium against a real portal (web + worker subprocesses):
log in, launch the non-ASCII branch, watch it become ready without reloading, open its URL,
tear it down."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from environments import demo
from tests.support.live import Portal, launch_from_form, log_in, running_portal

pytestmark = pytest.mark.browser


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    with running_portal(tmp_path / "portal-var") as running:
        yield running


def test_launch_watch_open_and_tear_down_a_preview(portal: Portal, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    log_in(page, portal)
    launch_from_form(page, portal, demo.UNICODE_BRANCH)
    url_before = page.url
    status = page.locator("[data-status]").first
    expect(status).to_have_attribute("data-status", "ready", timeout=60_000)
    assert page.url == url_before  # it became ready on screen, without a reload
    expect(page.get_by_text("preview_01").first).to_be_visible()
    page.screenshot(path=str(tmp_path / "ready.png"), full_page=True)

    web = page.locator("a[data-component=web]").first
    preview_url = web.get_attribute("href")
    preview = page.context.new_page()
    preview.goto(preview_url)
    expect(preview.locator("#branch")).to_have_text(demo.UNICODE_BRANCH)
    expect(preview.locator("h1")).to_contain_text("ünïcode ✨ edition")
    preview.close()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=re.compile("Tear down")).click()
    expect(page.locator("[data-status]").first).to_have_attribute(
        "data-status", "torn_down", timeout=30_000
    )
    runtime_dir = portal.var_dir / "runtime"
    assert not runtime_dir.exists() or not any(runtime_dir.iterdir())


def test_the_api_docs_render_with_nothing_loaded_from_another_host(portal: Portal,
                                                                   page) -> None:
    """As on a network without internet: any request that leaves the portal fails."""
    from playwright.sync_api import expect

    elsewhere: list[str] = []

    def only_the_portal(route) -> None:
        if route.request.url.startswith(portal.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_portal)
    page.goto(portal.url + "/api/v1/docs")

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Preview Portal API")
    expect(page.get_by_text("/api/v1/environments/{id}/extend").first).to_be_visible()
    assert elsewhere == []
