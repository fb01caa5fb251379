"""A run's end and the status it leaves its environment in are one change: nobody sees a ready or
torn-down environment whose run is still open, nor the reverse (the API, the pages and a second
worker read the same rows)."""

import pytest

from environments import reconciler, services
from environments.backends import get
from environments.models import (
    Environment,
    EnvironmentStatus,
    Interface,
    Run,
    RunStatus,
)
from tests.support.runs import launch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def at_the_last_notice(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """(what the notice says, the environment's status, its run's status) as each finished
    notice goes out: the last thing a run does before it ends."""
    seen: list[tuple[str, str, str]] = []

    def send(notice, ref=""):
        if notice.finished:
            run = Run.objects.order_by("-id").first()
            environment = Environment.objects.get(pk=run.environment_id)
            seen.append((notice.status, environment.status, run.status))
        return ref or "ref"

    monkeypatch.setattr(get("notify"), "send", send)
    return seen


def test_a_deploy_shows_ready_only_as_its_run_ends(demo_project, pool_of, developer,
                                                   at_the_last_notice) -> None:
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert at_the_last_notice == [("ready", "verifying", "running")]
    assert environment.status == EnvironmentStatus.READY
    assert environment.runs.get().status == RunStatus.SUCCEEDED


def test_a_teardown_shows_torn_down_only_as_its_run_ends(demo_project, pool_of, developer,
                                                         at_the_last_notice) -> None:
    pool_of(1)
    environment = launch(demo_project, "main", developer)
    services.teardown(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()

    assert at_the_last_notice[-1] == ("torn_down", "tearing_down", "running")
    assert environment.status == EnvironmentStatus.TORN_DOWN and environment.urls == {}
    assert [run.status for run in environment.runs.order_by("id")] == ["succeeded"] * 2


def test_a_launch_asked_for_during_a_teardown_whose_worker_died_is_carried_out_by_reconcile(
        demo_project, pool_of, developer) -> None:
    pool_of(2)
    environment = launch(demo_project, "main", developer)
    services.teardown(environment, actor=developer, interface=Interface.CLI)
    # The teardown ended and its worker died before the launch asked for meanwhile.
    Environment.objects.filter(pk=environment.pk).update(
        relaunch={"commit": None, "pull_request": None, "interface": Interface.WEBHOOK})

    reconciler.run_pass(dry_run=False, actor=None, interface=Interface.SYSTEM)

    again = Environment.objects.active().get(project=demo_project, branch="main")
    assert again.pk != environment.pk and again.status == EnvironmentStatus.READY
    assert Environment.objects.get(pk=environment.pk).relaunch is None
