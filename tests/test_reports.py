"""Smoke reports: deterministic keys, links that open without a portal session and expire
(signed for files, presigned for S3 on a moto server over real HTTP), served sandboxed."""

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from django.core import signing
from django.test import Client

from environments.backends import BackendError, get
from environments.models import EnvironmentStatus
from tests.support.live import free_port
from tests.support.runs import launch
from tests.support.web import fetch

KEY = "k/run-1/attempt-1.html"
HOSTILE = b"<title>report</title><script>document.title = document.cookie</script>"


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


# File storage: the portal serves its own reports.

def test_a_signed_link_opens_the_report_without_a_session_and_sandboxed(settings):
    get("storage").save(KEY, HOSTILE, "text/html")
    url = get("storage").url(KEY)

    assert url.startswith(f"{settings.PORTAL_BASE_URL}/reports/{KEY}?signature=")
    response = Client().get(path_of(url))

    assert response.status_code == 200
    assert response.content == HOSTILE
    assert response["Content-Security-Policy"] == "sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Content-Type"] == "text/html; charset=utf-8"


def test_an_expired_link_is_refused(settings, monkeypatch):
    get("storage").save(KEY, HOSTILE, "text/html")
    settings.PORTAL_REPORT_LINK_HOURS = 1
    signed_at = time.time() - 3601
    monkeypatch.setattr(signing.time, "time", lambda: signed_at)
    url = get("storage").url(KEY)
    monkeypatch.undo()

    response = Client().get(path_of(url))

    assert response.status_code == 403
    assert b"invalid or has expired" in response.content


def test_a_forged_or_borrowed_link_is_refused():
    storage = get("storage")
    storage.save(KEY, HOSTILE, "text/html")
    storage.save("k/run-1/attempt-2.html", HOSTILE, "text/html")
    signature = parse_qs(urlsplit(storage.url(KEY)).query)["signature"][0]
    client = Client()

    assert client.get(f"/reports/{KEY}").status_code == 403
    assert client.get(f"/reports/{KEY}?signature=1xWcW0:forged").status_code == 403
    # A signature is for one report only.
    assert client.get(f"/reports/k/run-1/attempt-2.html?signature={signature}").status_code == 403


def test_a_signed_link_to_a_missing_or_escaping_key_is_not_found():
    storage = get("storage")
    client = Client()

    assert client.get(path_of(storage.url("k/run-1/missing.html"))).status_code == 404
    assert client.get(path_of(storage.url("../../etc/passwd"))).status_code == 404


# S3 on a moto server: real HTTP through boto3.

@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_reports(settings, monkeypatch, moto_server: str) -> str:
    """PORTAL_REPORTS=s3 on a new bucket of the moto server; returns the bucket."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bucket = f"reports-{time.monotonic_ns()}"
    boto3.client("s3", endpoint_url=moto_server, region_name="eu-west-1").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    settings.PORTAL_REPORTS = "s3"
    settings.PORTAL_S3_BUCKET = bucket
    settings.AWS_ENDPOINT_URL = moto_server
    settings.AWS_REGION = "eu-west-1"
    return bucket


def test_s3_stores_under_the_key_and_links_with_an_expiring_presigned_url(
        s3_reports, moto_server, settings):
    storage = get("storage")
    storage.save(KEY, HOSTILE, "text/html")
    storage.save(KEY, b"<p>second write replaces the first</p>", "text/html")

    url = storage.url(KEY)

    assert url.startswith(f"{moto_server}/{s3_reports}/{KEY}?")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Expires"] == [str(int(settings.PORTAL_REPORT_LINK_HOURS * 3600))]
    assert fetch(url) == b"<p>second write replaces the first</p>"  # no portal, no session
    assert storage.read(KEY) == b"<p>second write replaces the first</p>"
    with pytest.raises(BackendError, match="no report"):
        storage.read("k/missing.html")


def test_s3_errors_say_whether_trying_again_can_help(s3_reports, settings):
    settings.PORTAL_S3_BUCKET = "no-such-bucket"
    with pytest.raises(BackendError) as missing:
        get("storage").save(KEY, b"x", "text/html")
    assert "NoSuchBucket" in str(missing.value)
    assert not missing.value.retryable

    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendError) as unreachable:
        get("storage").save(KEY, b"x", "text/html")
    assert unreachable.value.retryable


@pytest.mark.django_db(transaction=True)
def test_a_deploy_with_s3_reports_links_each_attempt_to_its_presigned_report(
        s3_reports, demo_project, pool_of, developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    attempt = environment.runs.get().smoke_attempts.get()
    url = get("storage").url(attempt.report_key)
    assert url.startswith(f"{settings.AWS_ENDPOINT_URL}/{s3_reports}/{environment.env_key}/run-")
    report = fetch(url).decode()
    for name in ("test_health[web /healthz]", "test_login[api POST /login]",
                 "test_component_to_component[web to api]"):
        assert name in report
