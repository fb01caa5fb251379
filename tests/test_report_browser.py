"""Smoke reports in headless Chromium against a real portal (web + worker subprocesses): the
environment page lists every attempt with its counts and opens each report; a report shows the
checks by name without a session; no script in a report runs."""

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.live import Portal, launch_from_form, log_in, running_portal

pytestmark = pytest.mark.browser
HOSTILE = ("<!doctype html><title>hostile report</title><body><p id=text>static text</p>"
           "<script>document.title = 'ran: ' + document.cookie;"
           "document.body.dataset.ran = 'yes'</script>")


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[Portal]:
    settings = {"PORTAL_SMOKE_ATTEMPTS": "2", "PORTAL_SMOKE_BACKOFF": "0"}
    with running_portal(tmp_path / "portal-var", **settings) as running:
        yield running


def test_a_degraded_branch_lists_its_attempts_and_its_report_names_the_checks(
        portal: Portal, page, browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    log_in(page, portal)
    launch_from_form(page, portal, "broken/login")
    expect(page.locator("[data-status]").first).to_have_attribute(
        "data-status", "degraded", timeout=90_000)
    expect(page.locator(".detail")).to_contain_text("test_login[api POST /login]")
    rows = page.locator("#smoke-attempts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("#2")
    expect(rows.nth(1).locator("td.ok")).to_have_text("6")
    expect(rows.nth(1).locator("td.bad")).to_have_text("1")
    page.screenshot(path=str(tmp_path / "degraded.png"), full_page=True)
    report_url = rows.nth(1).get_by_role("link", name="report").get_attribute("href")
    assert report_url.startswith(portal.url + "/reports/")

    # Whoever holds the link reads the report, no session needed.
    stranger = browser.new_context().new_page()
    stranger.goto(report_url)
    checks = stranger.locator("#checks")
    for name in ("test_health[web /healthz]", "test_health[api /healthz]",
                 "test_login[api POST /login]",
                 "test_database_row_written_by_the_app_is_in_its_slot[api POST /items]",
                 "test_integration[file queue]", "test_component_to_component[web to api]"):
        expect(checks).to_contain_text(name)
    expect(checks.locator("tr", has_text="test_login")).to_contain_text("failed")
    # pytest-html draws its own table with a script: sandboxed, it does not.
    expect(stranger.locator("#results-table tbody")).to_have_count(0)
    stranger.screenshot(path=str(tmp_path / "report.png"), full_page=True)


def test_no_script_in_a_report_runs_with_the_portals_cookies(portal: Portal, page) -> None:
    from playwright.sync_api import expect

    key = "hostile/run-1/attempt-1.html"
    (portal.var_dir / "reports" / "hostile" / "run-1").mkdir(parents=True)
    (portal.var_dir / "reports" / key).write_text(HOSTILE)
    link = portal.manage(
        "shell", "--verbosity", "0", "-c",
        f"from environments.backends import get; print(get('storage').url({key!r}))",
    ).strip()
    parts = urlsplit(link)
    log_in(page, portal)  # the session cookie is there for a script to use

    response = page.goto(f"{portal.url}{parts.path}?{parts.query}")

    assert response.status == 200
    expect(page.locator("#text")).to_have_text("static text")
    expect(page).to_have_title("hostile report")
    assert page.locator("body").get_attribute("data-ran") is None
