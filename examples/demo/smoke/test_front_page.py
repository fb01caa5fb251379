"""The demo's own smoke test, run by the portal after each deploy next to its built-in checks
(Project.smoke "tests": "smoke"). It gets the environment through PREVIEW_* variables."""

import html
import os
import urllib.request


def test_front_page_names_the_branch_and_commit() -> None:
    with urllib.request.urlopen(os.environ["PREVIEW_URL_WEB"], timeout=10) as response:
        page = html.unescape(response.read().decode())

    assert os.environ["PREVIEW_BRANCH"] in page
    assert os.environ["PREVIEW_COMMIT"][:12] in page
