"""The web process as the image runs it: gunicorn, PORTAL_DEBUG off, static files included."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.live import ROOT, free_port, portal_env
from tests.support.web import fetch

HOST = "portal.example"


def get(url: str) -> bytes:
    return fetch(url, {"Host": HOST})


@pytest.fixture
def gunicorn(tmp_path: Path):
    port = free_port()
    env = portal_env(tmp_path, PORTAL_DEBUG="0", PORTAL_SECRET_KEY="test-" + "x" * 50,
                     PORTAL_ALLOWED_HOSTS=HOST)
    log = (tmp_path / "gunicorn.log").open("w+")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "portal.wsgi:application",
         f"--bind=127.0.0.1:{port}", "--workers=1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            get(url + "/healthz")
            break
        except OSError:
            assert process.poll() is None, Path(log.name).read_text()[-3000:]
            assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
            time.sleep(0.2)
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def test_gunicorn_serves_the_portal_and_its_static_files_without_debug(gunicorn):
    assert get(gunicorn + "/healthz") == b"ok\n"
    for path in ("/static/js/htmx.min.js", "/static/css/portal.css",
                 "/static/admin/css/base.css", "/static/ninja/swagger-ui-bundle.js"):
        assert get(gunicorn + path), path
