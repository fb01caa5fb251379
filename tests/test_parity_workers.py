"""Runs through the real task queue: two worker processes (`manage.py qcluster`, as deployed)
take runs from the configured broker (ORM here; Redis in scripts/parity-tests) against the
test database, and every run is carried out exactly once."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.conf import Conf

from environments import demo, services
from environments.models import (
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Run,
    RunStatus,
)
from tests.support.live import ROOT, kill_previews, portal_env, stop_group
from tests.support.polling import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT = 120


def database_url() -> str:
    """DATABASE_URL of the database this test runs on, for the worker processes."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    return f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch, isolated_var: Path) -> Iterator[None]:
    monkeypatch.setattr(Conf, "SYNC", False)  # enqueue for real: the workers take it from here
    queue = {"PORTAL_BROKER": settings.PORTAL_BROKER}
    if settings.REDIS_URL:
        queue["REDIS_URL"] = settings.REDIS_URL
    env = portal_env(isolated_var, DATABASE_URL=database_url(), PORTAL_WORKERS="2",
                     PORTAL_SMOKE_BACKOFF="0", **queue)
    log = (isolated_var.parent / "qcluster.log").open("w+")
    process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield
    finally:
        stop_group(process, grace=30)
        kill_previews(isolated_var)
        log.close()


def statuses(environments: list[Environment]) -> set[str]:
    """Their statuses once their runs have ended (a run notifies after the status is set)."""
    ids = [e.pk for e in environments]
    if Run.objects.open().filter(environment_id__in=ids).exists():
        return set()
    return set(Environment.objects.filter(pk__in=ids).values_list("status", flat=True))


def test_two_workers_deploy_and_tear_down_through_the_broker(workers, demo_project, pool_of,
                                                             developer):
    pool_of(2)
    branches = ("feature/checkout", demo.UNICODE_BRANCH)
    launched = [services.launch(demo_project, branch, actor=developer, interface=Interface.CLI)
                for branch in branches]
    wait_until("both ready", lambda: statuses(launched) == {EnvironmentStatus.READY}, TIMEOUT,
               interval=0.3)
    leased = DbSlot.objects.filter(environment__in=launched).values_list("name", flat=True)
    assert len(set(leased)) == 2

    for environment in launched:
        environment.refresh_from_db()
        services.teardown(environment, actor=developer, interface=Interface.CLI)
    wait_until("both torn down", lambda: statuses(launched) == {EnvironmentStatus.TORN_DOWN},
               TIMEOUT, interval=0.3)
    for environment in launched:
        runs = list(environment.runs.order_by("id").values_list("kind", "status"))
        assert runs == [("deploy", RunStatus.SUCCEEDED), ("teardown", RunStatus.SUCCEEDED)]
