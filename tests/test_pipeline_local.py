"""The deploy/teardown pipeline against the local runtime, with real processes and real git."""

import hashlib
import json
import time
import urllib.request
from pathlib import Path

import pytest

from environments import dbpool, demo, naming, pipeline, services
from environments.backends import get
from environments.models import (
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    RunKind,
    RunStatus,
    SlotState,
    StepStatus,
)
from environments.refused import Refused
from tests.support.commits import commit_on
from tests.support.runs import launch
from tests.support.web import fetch

pytestmark = pytest.mark.django_db(transaction=True)


def post_json(url: str, value: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(value).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_unicode_branch_comes_up_with_its_own_urls_and_database(demo_project, pool_of, developer):
    pool_of(2)
    environment = launch(demo_project, demo.UNICODE_BRANCH, developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert set(environment.urls) == {"web", "api"}
    page = fetch(environment.urls["web"]).decode()
    assert "ünïcode ✨ edition" in page
    assert demo.UNICODE_BRANCH in page
    slot = DbSlot.objects.get(environment=environment)
    assert slot.state == SlotState.LEASED
    item = post_json(environment.urls["api"] + "items", {"name": "espresso"})
    # The row is in this environment's own slot file, nowhere else.
    database = get("pool").connection(slot.name)
    import sqlite3

    rows = sqlite3.connect(database.url.removeprefix("sqlite:///")).execute(
        "SELECT name FROM items WHERE id = ?", (item["id"],)
    ).fetchall()
    assert rows == [("espresso",)]
    run = environment.runs.get()
    assert [s.status for s in run.steps.all()] == [StepStatus.SUCCEEDED] * 8
    assert run.smoke_attempts.get().passed == 7


def test_teardown_leaves_no_process_worktree_or_lease(demo_project, pool_of, developer,
                                                       isolated_var: Path):
    pool_of(1)
    environment = launch(demo_project, "main", developer)
    url = environment.urls["web"]
    runtime_dir = isolated_var / "runtime" / environment.env_key
    assert (runtime_dir / "src" / "app.py").exists()

    services.teardown(environment, actor=developer, interface=Interface.WEB)
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.TORN_DOWN
    assert not runtime_dir.exists()
    with pytest.raises(OSError):
        fetch(url)
    assert DbSlot.objects.get().state == SlotState.FREE
    assert not list((isolated_var / "git" / "demo.git" / "worktrees").glob("*"))


def test_two_projects_preview_main_side_by_side_and_one_teardown_leaves_the_other(
        demo_project, demo_repo, pool_of, developer, isolated_var: Path):
    pool_of(2)
    shop = demo.register(demo_repo, "shop")
    first = launch(demo_project, "main", developer)
    second = launch(shop, "main", developer)

    for environment in (first, second):
        assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert first.env_key != second.env_key
    assert set(first.urls.values()).isdisjoint(second.urls.values())
    assert pipeline.exposed_hosts(first) != pipeline.exposed_hosts(second)
    assert first.slot.name != second.slot.name
    worktrees = [isolated_var / "runtime" / e.env_key / "src" for e in (first, second)]
    assert all((worktree / "app.py").exists() for worktree in worktrees)
    post_json(first.urls["api"] + "items", {"name": "only in demo"})
    assert "only in demo" not in fetch(second.urls["api"] + "items").decode()
    gone = first.urls["web"]

    services.teardown(first, actor=developer, interface=Interface.WEB)
    first.refresh_from_db()
    second.refresh_from_db()

    assert first.status == EnvironmentStatus.TORN_DOWN
    assert not worktrees[0].exists() and worktrees[1].exists()
    with pytest.raises(OSError):
        fetch(gone)
    assert second.status == EnvironmentStatus.READY
    assert b"Demo shop" in fetch(second.urls["web"])
    assert second.slot.state == SlotState.LEASED


def test_an_environment_keyed_under_the_old_rule_keeps_its_key_and_names_on_redeploy(
        demo_project, demo_repo, pool_of, developer, isolated_var: Path,
        monkeypatch: pytest.MonkeyPatch):
    pool_of(1)
    old_key = hashlib.md5(b"main").hexdigest()
    with monkeypatch.context() as before_the_change:  # a portal keying on the branch alone
        before_the_change.setattr(naming, "env_key", lambda project, branch: old_key)
        environment = launch(demo_project, "main", developer)
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    hosts, urls = pipeline.exposed_hosts(environment), environment.urls
    commit_on(demo_repo, "main", "banner.txt", "Demo shop — v2\n")

    again = launch(demo_project, "main", developer)  # the launch of a live branch redeploys it

    assert (again.pk, again.env_key) == (environment.pk, old_key)
    assert again.status == EnvironmentStatus.READY, again.status_detail
    assert hosts == [f"main-{old_key[:6]}-{c}.preview.localhost" for c in ("web", "api")]
    assert pipeline.exposed_hosts(again) == hosts and again.urls == urls
    assert "Demo shop — v2" in fetch(again.urls["web"]).decode()
    assert [d.name for d in (isolated_var / "runtime").iterdir()] == [old_key]


def test_a_component_that_dies_at_start_fails_the_deploy_with_its_output(
        demo_project, pool_of, developer):
    pool_of(1)
    environment = launch(demo_project, "broken/crash-on-start", developer)

    assert environment.status == EnvironmentStatus.FAILED
    assert "rollout failed" in environment.status_detail
    assert "crash-on-start is set on this branch" in environment.status_detail
    assert environment.runs.get().status == RunStatus.FAILED


def test_full_pool_queues_the_environment_until_a_slot_frees(demo_project, pool_of, developer):
    pool_of(1)
    first = launch(demo_project, "main", developer)
    second = launch(demo_project, "feature/checkout", developer)

    assert first.status == EnvironmentStatus.READY
    assert second.status == EnvironmentStatus.QUEUED
    assert second.runs.get().status == RunStatus.WAITING
    assert dbpool.queue_position(second) == 1

    services.teardown(first, actor=developer, interface=Interface.WEB)
    second.refresh_from_db()

    assert second.status == EnvironmentStatus.READY, second.status_detail
    assert DbSlot.objects.get().environment == second


def test_launching_a_live_branch_again_redeploys_it(demo_project, pool_of, developer):
    pool_of(2)
    environment = launch(demo_project, "main", developer)
    again = launch(demo_project, "main", developer)

    assert again.pk == environment.pk
    assert [r.kind for r in again.runs.order_by("id")] == [RunKind.DEPLOY, RunKind.REDEPLOY]
    assert again.status == EnvironmentStatus.READY
    assert Environment.objects.count() == 1
    assert DbSlot.objects.filter(state=SlotState.LEASED).count() == 1


def test_a_run_delivered_twice_runs_once(demo_project, pool_of, developer):
    from environments import tasks

    pool_of(1)
    environment = launch(demo_project, "main", developer)
    run = environment.runs.get()
    lines_before = sum(step.lines.count() for step in run.steps.all())

    tasks.execute_run(run.pk)

    assert sum(step.lines.count() for step in run.steps.all()) == lines_before


def test_unknown_or_invalid_branch_is_refused_and_creates_nothing(demo_project, pool_of,
                                                                  developer):
    pool_of(1)
    with pytest.raises(Refused) as missing:
        services.launch(demo_project, "no/such-branch", actor=developer, interface="api")
    with pytest.raises(Refused) as invalid:
        services.launch(demo_project, "bad..name", actor=developer, interface="api")

    assert missing.value.status == 404
    assert invalid.value.status == 400
    assert not Environment.objects.exists()


def test_redeploy_at_the_same_commit_restarts_nothing(demo_project, pool_of, developer):
    pool_of(1)
    environment = launch(demo_project, "main", developer)
    runtime = get("runtime")
    pids = {c: runtime.process(environment.env_key, c).pid for c in ("web", "api")}

    services.redeploy(environment, actor=developer, interface=Interface.WEB)

    redeploy = environment.runs.get(kind=RunKind.REDEPLOY)
    apply_log = [line.text for line in redeploy.steps.get(name="apply").lines.all()]
    assert apply_log == ["all 2 components already run " + environment.commit[:12]]
    assert {c: runtime.process(environment.env_key, c).pid for c in ("web", "api")} == pids


def test_redeploy_at_a_new_commit_restarts_on_it(demo_project, demo_repo, pool_of, developer):
    pool_of(1)
    environment = launch(demo_project, "feature/checkout", developer)
    old_url = environment.urls["web"]
    new_commit = commit_on(demo_repo, "feature/checkout", "banner.txt", "Demo shop — v2\n")

    services.redeploy(environment, actor=developer, interface=Interface.WEB)
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.READY
    assert environment.commit == new_commit
    assert "Demo shop — v2" in fetch(environment.urls["web"]).decode()
    assert environment.urls["web"] == old_url  # the port is kept, so the link stays valid


def test_a_component_that_dies_after_ready_is_reported(demo_project, pool_of, developer):
    import os
    import signal

    pool_of(1)
    environment = launch(demo_project, "main", developer)
    runtime = get("runtime")
    os.killpg(runtime.process(environment.env_key, "api").pid, signal.SIGKILL)

    states = runtime.component_states(environment.env_key)
    for _ in range(100):  # the kill takes effect asynchronously
        if states["api"].startswith("exited"):
            break
        time.sleep(0.05)
        states = runtime.component_states(environment.env_key)

    assert states["web"].startswith("running")
    assert states["api"].startswith("exited")


def test_reconcile_stops_processes_of_environments_no_longer_live(
        demo_project, pool_of, developer, isolated_var: Path):
    from io import StringIO

    from django.core.management import call_command

    pool_of(2)
    kept = launch(demo_project, "main", developer)
    lost = launch(demo_project, "feature/checkout", developer)
    # A teardown whose workload step never ran (say the worker machine was replaced).
    Environment.objects.filter(pk=lost.pk).update(status=EnvironmentStatus.TORN_DOWN)

    out = StringIO()
    call_command("reconcile", "--dry-run", stdout=out)
    assert f"orphan {lost.env_key}:" in out.getvalue()
    assert kept.env_key not in out.getvalue()
    assert (isolated_var / "runtime" / lost.env_key).exists()

    call_command("reconcile", stdout=StringIO())
    assert not (isolated_var / "runtime" / lost.env_key).exists()
    with pytest.raises(OSError):
        fetch(lost.urls["web"])
    assert "Demo shop" in fetch(kept.urls["web"]).decode()
