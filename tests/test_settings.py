"""Missing or contradictory settings stop the portal at start, naming the variable."""

import subprocess
import sys

import pytest

from tests.live import ROOT, portal_env


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


def test_serving_without_debug_needs_a_secret_key(tmp_path) -> None:
    done = start(tmp_path, "qcluster", PORTAL_DEBUG="0", PORTAL_ALLOWED_HOSTS="portal.example")

    assert done.returncode != 0
    assert "PORTAL_SECRET_KEY must be set" in done.stderr


def test_production_settings_start(tmp_path) -> None:
    done = start(tmp_path, PORTAL_DEBUG="0", PORTAL_SECRET_KEY="x" * 50,
                 PORTAL_ALLOWED_HOSTS="portal.example",
                 PORTAL_ENV_TTL_HOURS="0.5")

    assert done.returncode == 0, done.stderr
