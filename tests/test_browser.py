"""A new user's path in headless Chromium against a real portal (web + worker subprocesses):
log in, launch the non-ASCII branch, watch it become ready without reloading, open its URL,
tear it down."""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from environments import demo
from tests.live import Portal, running_portal

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
pytestmark = pytest.mark.browser


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    with running_portal(tmp_path / "portal-var") as running:
        yield running


@pytest.fixture
def page(tmp_path: Path):
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing on CI: `make test` installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def test_launch_watch_open_and_tear_down_a_preview(portal: Portal, page, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(portal.url + "/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", portal.password)
    page.click("button[type=submit], input[type=submit]")
    expect(page).to_have_url(re.compile(r"/$"))

    page.goto(portal.url + "/launch")
    page.select_option("#project", "demo")
    # Choosing the project reloads its branch list: pick the branch once that has settled.
    page.wait_for_load_state("networkidle")
    expect(page.locator(f'#branch option[value="{demo.UNICODE_BRANCH}"]')).to_have_count(1)
    page.select_option("#branch", demo.UNICODE_BRANCH)
    expect(page.locator("#branch")).to_have_value(demo.UNICODE_BRANCH)
    page.get_by_role("button", name=re.compile("Launch")).click()

    expect(page).to_have_url(re.compile(r"/environments/\d+$"))
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
