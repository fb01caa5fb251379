"""One table of status moves for runs and environments (environments/lifecycle.py): a move it
does not hold is refused with both statuses named, and nothing is written."""

import pytest

from environments import lifecycle, services, taskqueue, tasks
from environments.models import Environment, EnvironmentStatus, Interface, Run, RunStatus
from environments.refused import Refused

pytestmark = pytest.mark.django_db(transaction=True)


def launched(project, branch: str, user) -> Environment:
    environment = services.launch(project, branch, actor=user, interface=Interface.CLI)
    environment.refresh_from_db()
    return environment


def test_a_move_the_table_does_not_hold_is_refused_naming_both_statuses(
        demo_project, developer) -> None:
    queued = services.launch(demo_project, "main", actor=developer, interface=Interface.CLI)
    # No DB slot: the run waits and the environment stays queued.

    with pytest.raises(lifecycle.IllegalMove, match="from queued to verifying"):
        lifecycle.start_verifying(queued, {"web": "http://x"})

    queued.refresh_from_db()
    assert queued.status == EnvironmentStatus.QUEUED and queued.urls == {}


def test_a_run_that_ended_cannot_be_ended_again(demo_project, pool_of, developer) -> None:
    pool_of(1)
    environment = launched(demo_project, "main", developer)
    run = environment.runs.get()

    with pytest.raises(lifecycle.IllegalMove, match="from succeeded to failed"):
        lifecycle.finish_run(run, RunStatus.FAILED, "late",
                             lifecycle.Ending(EnvironmentStatus.FAILED, "late"))

    environment.refresh_from_db()
    assert environment.runs.get().status == RunStatus.SUCCEEDED
    assert environment.status == EnvironmentStatus.READY


def test_tearing_down_what_was_torn_down_meanwhile_is_a_409_that_changes_nothing(
        demo_project, pool_of, developer) -> None:
    pool_of(1)
    environment = launched(demo_project, "main", developer)
    seen_before = Environment.objects.get(pk=environment.pk)  # a second tab, still "ready"
    services.teardown(environment, actor=developer, interface=Interface.WEB)

    with pytest.raises(Refused, match="already torn down") as refused:
        services.teardown(seen_before, actor=developer, interface=Interface.WEB)

    environment.refresh_from_db()
    assert refused.value.status == 409
    assert environment.status == EnvironmentStatus.TORN_DOWN
    assert [run.kind for run in environment.runs.order_by("id")] == ["deploy", "teardown"]


def test_a_freed_slot_wakes_the_queue_through_taskqueue_enqueue_run(
        demo_project, pool_of, developer, monkeypatch) -> None:
    """What the deferred_runs fixture patches: a woken run must wait for the test's drain too."""
    pool_of(1)
    first = launched(demo_project, "main", developer)
    queued: list[int] = []
    monkeypatch.setattr(taskqueue, "enqueue_run", queued.append)
    second = services.launch(demo_project, "feature/checkout", actor=developer,
                             interface=Interface.CLI)
    tasks.execute_run(queued.pop())  # no slot is free: it waits
    services.teardown(first, actor=developer, interface=Interface.CLI)

    tasks.execute_run(queued.pop())  # the teardown frees the slot, whose reset wakes the queue

    second.refresh_from_db()
    waiting = second.runs.get()
    assert queued == [waiting.pk]
    assert waiting.status == RunStatus.WAITING and second.status == EnvironmentStatus.QUEUED
    assert Run.objects.filter(status=RunStatus.RUNNING).count() == 0
