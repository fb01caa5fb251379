"""Absolute links to the portal's pages, as workers put them in Slack messages, GitHub statuses
and report links."""

import subprocess
import sys
from pathlib import Path

from django.urls import reverse

from environments import links
from tests.support.live import ROOT, portal_env


def test_a_pages_link_is_where_the_portal_serves_that_page(settings):
    settings.PORTAL_BASE_URL = "https://previews.example.com"

    assert links.page_url("environment", 42) == (
        "https://previews.example.com" + reverse("environment", args=[42]))
    assert links.page_url("report", "7/report.html", query="signature=abc") == (
        "https://previews.example.com" + reverse("report", args=["7/report.html"])
        + "?signature=abc")


def test_a_worker_links_to_a_page_without_loading_the_api_or_sign_in(tmp_path: Path):
    # What a worker process does: the root URLconf would import django-ninja and the OIDC client.
    code = ("import django, sys; django.setup(); from environments import links; "
            "print(links.page_url('environment', 1)); "
            "print(sorted(m for m in ('ninja', 'mozilla_django_oidc') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True, env=portal_env(tmp_path / "var"))

    url, loaded = done.stdout.splitlines()
    assert url.endswith("/environments/1")
    assert loaded == "[]"
