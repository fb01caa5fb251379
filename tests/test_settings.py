"""Missing or contradictory settings stop the portal at start, naming the variable."""

import json
import secrets
import subprocess
import sys
import time

import pytest
from django.core.cache import cache

from portal import login
from tests.support.live import ROOT, portal_env


def start(tmp_path, command: str = "check", **variables: str) -> subprocess.CompletedProcess:
    env = portal_env(tmp_path, **variables)
    return subprocess.run(
        [sys.executable, "manage.py", command, *(["--help"] if command == "qcluster" else [])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"PORTAL_DB_POOL": "mysql"}, "PORTAL_POOL_MYSQL_URL"),
        ({"PORTAL_BROKER": "redis"}, "REDIS_URL"),
        ({"PORTAL_REPORTS": "s3"}, "PORTAL_S3_BUCKET"),
        ({"PORTAL_NOTIFY": "slack", "PORTAL_SLACK_CHANNEL": "#x"}, "SLACK_BOT_TOKEN"),
        ({"PORTAL_DNS": "route53", "PORTAL_ROUTE53_ZONE_ID": "Z1"}, "PORTAL_RUNTIME"),
        ({"PORTAL_ROUTE53_RECORD": "mx"}, "PORTAL_ROUTE53_RECORD"),
        ({"PORTAL_RUNTIME": "docker"}, "PORTAL_RUNTIME"),
        ({"PORTAL_SMOKE_ATTEMPTS": "three"}, "PORTAL_SMOKE_ATTEMPTS"),
        ({"PORTAL_ENV_TTL_HOURS": "-1"}, "PORTAL_ENV_TTL_HOURS"),
        ({"PORTAL_INGRESS_ANNOTATIONS": "[1]"}, "PORTAL_INGRESS_ANNOTATIONS"),
        ({"PORTAL_PROXY_SSL_HEADER": "X-Forwarded-Proto: https"}, "PORTAL_PROXY_SSL_HEADER"),
        # Outside a cluster, without a kubeconfig, there is nothing to connect to.
        ({"PORTAL_RUNTIME": "kubernetes"}, "PORTAL_KUBECONFIG"),
        ({"PORTAL_RUNTIME": "kubernetes", "PORTAL_KUBECONFIG": "/nowhere/config"},
         "PORTAL_KUBECONFIG"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_variable(tmp_path, variables, named) -> None:
    done = start(tmp_path, **variables)

    assert done.returncode != 0
    assert named in done.stderr


def test_the_kubernetes_runtime_refuses_a_pool_its_pods_cannot_reach(tmp_path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))
    done = start(tmp_path, PORTAL_RUNTIME="kubernetes", PORTAL_KUBECONFIG=str(kubeconfig))

    assert done.returncode != 0
    assert "PORTAL_RUNTIME=kubernetes needs a DB pool" in done.stderr
    assert "PORTAL_DB_POOL=mysql" in done.stderr


def test_serving_without_debug_needs_a_secret_key(tmp_path) -> None:
    done = start(tmp_path, "qcluster", PORTAL_DEBUG="0", PORTAL_ALLOWED_HOSTS="portal.example")

    assert done.returncode != 0
    assert "PORTAL_SECRET_KEY must be set" in done.stderr


def test_production_settings_start(tmp_path) -> None:
    done = start(tmp_path, PORTAL_DEBUG="0", PORTAL_SECRET_KEY="x" * 50,
                 PORTAL_ALLOWED_HOSTS="portal.example",
                 PORTAL_ENV_TTL_HOURS="0.5")

    assert done.returncode == 0, done.stderr


def production(**variables: str) -> dict[str, str]:
    return {"PORTAL_DEBUG": "0", "PORTAL_SECRET_KEY": secrets.token_urlsafe(50),
            "PORTAL_ALLOWED_HOSTS": "portal.example.com",
            "PORTAL_BASE_URL": "https://portal.example.com", **variables}


@pytest.mark.parametrize("behind_a_proxy", [{}, {"PORTAL_PROXY_SSL_HEADER": "X-Forwarded-Proto"}])
def test_production_settings_pass_djangos_deployment_checks(tmp_path, behind_a_proxy) -> None:
    env = portal_env(tmp_path, **production(**behind_a_proxy))
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues (0 silenced)." in done.stdout


def test_over_https_browsers_are_sent_to_https_and_told_to_stay(tmp_path) -> None:
    """Behind a TLS-terminating proxy that says the client's scheme; probes use plain http."""
    script = """
from django.test import Client
client = Client()
plain = client.get("/", HTTP_HOST="portal.example.com")
secure = client.get("/healthz", HTTP_HOST="portal.example.com", HTTP_X_FORWARDED_PROTO="https")
probe = client.get("/healthz", HTTP_HOST="portal.example.com")
print(plain.status_code, plain["Location"])
print(secure.status_code, secure["Strict-Transport-Security"])
print(probe.status_code)
"""
    env = portal_env(tmp_path, **production(PORTAL_PROXY_SSL_HEADER="X-Forwarded-Proto"))
    done = subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", script],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.stdout.splitlines() == [
        "301 https://portal.example.com/",
        "200 max-age=31536000; includeSubDomains; preload",
        "200",
    ], done.stderr


@pytest.fixture
def no_failures_remembered():
    cache.clear()
    yield
    cache.clear()


def test_the_sixth_failed_login_is_refused_even_with_the_right_password_until_the_window_passes(
        client, developer, qa, monkeypatch, no_failures_remembered) -> None:
    def log_in(password: str, page: str = "/accounts/login/", username: str = "dev"):
        return client.post(page, {"username": username, "password": password})

    for _ in range(login.FAILURES):
        assert "did not match" in log_in("guess").content.decode()
    refused = log_in("pw-dev")
    admin_refused = log_in("pw-dev", page="/admin/login/")
    other_user = log_in("pw-qa", username="qa")  # guessing at one name locks out only that one
    client.logout()
    later = time.time() + login.WINDOW + 1
    monkeypatch.setattr(login, "time", lambda: later)
    after_the_window = log_in("pw-dev")

    assert refused.status_code == 200
    assert "Too many failed attempts: try again in 15 minutes." in refused.content.decode()
    assert "Too many failed attempts" in admin_refused.content.decode()
    assert other_user.status_code == 302
    assert after_the_window.status_code == 302
    assert client.session["_auth_user_id"] == str(developer.pk)
