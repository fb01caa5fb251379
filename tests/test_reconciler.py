"""The reconciler: planted orphans of each kind are listed by a dry run (and left alone), fixed
by a real pass, written to the audit log and shown on the Health page; a run whose worker died
is resumed to its end; the schedule exists after migrate."""

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import Schedule

from environments import dbpool, demo, naming, pipeline, reconciler, services, tasks
from environments.backends import get
from environments.backends.dns.route53 import Route53Dns
from environments.backends.runtime.local import LocalRuntime
from environments.models import (
    AuditEvent,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    ReconcilePass,
    Run,
    RunStatus,
    SlotState,
    StepStatus,
)
from tests.support.route53 import DOMAIN
from tests.support.runs import launch

pytestmark = pytest.mark.django_db(transaction=True)
KINDS = {reconciler.ORPHAN, reconciler.SLOT, reconciler.RESET, reconciler.DNS,
         reconciler.WAITING}


def host(environment: Environment, component: str = "web") -> str:
    return naming.host(environment.env_key, environment.branch, component, "slug", DOMAIN)


@pytest.fixture
def planted(demo_project, pool_of, developer, request, isolated_var: Path):
    """One orphan of each kind (but a stuck run, which has a test of its own)."""
    pool_of(2)
    kept = launch(demo_project, "main", developer)
    lost = launch(demo_project, "feature/checkout", developer)
    # A teardown that never got to its steps: processes, worktree, slot and DNS stay.
    Environment.objects.filter(pk=lost.pk).update(status=EnvironmentStatus.TORN_DOWN)
    queued = launch(demo_project, demo.UNICODE_BRANCH, developer)
    assert queued.status == EnvironmentStatus.QUEUED
    # Grown behind the portal's back (no wake-up): one slot free, one whose reset was lost.
    dbpool.ensure_pool_size(4)
    stuck = DbSlot.objects.filter(state=SlotState.FREE).order_by("name").last()
    DbSlot.objects.filter(pk=stuck.pk).update(
        state=SlotState.RESETTING, resetting_since=timezone.now() - timedelta(hours=1))
    # Route53 only now: the local runtime has no load balancer to point records at.
    request.getfixturevalue("zone_id")
    Route53Dns().upsert([host(lost), host(kept), f"www.{DOMAIN}"], "192.0.2.10", lambda _: None)
    return {"kept": kept, "lost": lost, "queued": queued, "stuck": stuck,
            "runtime": isolated_var / "runtime"}


def test_a_dry_run_lists_each_kind_and_changes_nothing(planted, admin, client):
    lost, queued, stuck = planted["lost"], planted["queued"], planted["stuck"]
    out = StringIO()
    call_command("reconcile", "--dry-run", stdout=out)
    listed = out.getvalue()

    assert f"orphan {lost.env_key}:" in listed
    assert planted["kept"].env_key not in listed
    done = ReconcilePass.objects.get()
    assert done.dry_run and {f["kind"] for f in done.findings} == KINDS
    assert (planted["runtime"] / lost.env_key).exists()
    assert DbSlot.objects.get(environment=lost).state == SlotState.LEASED
    assert DbSlot.objects.get(pk=stuck.pk).state == SlotState.RESETTING
    assert host(lost) in Route53Dns().records()
    assert queued.runs.get().status == RunStatus.WAITING
    assert not AuditEvent.objects.filter(action="reconcile").exists()


def test_a_pass_fixes_each_kind_audits_it_and_the_health_page_shows_it(planted, admin, client):
    lost, kept, queued = planted["lost"], planted["kept"], planted["queued"]
    call_command("reconcile", stdout=StringIO())

    assert not (planted["runtime"] / lost.env_key).exists()
    assert set(LocalRuntime().inventory()) == {kept.env_key, queued.env_key}
    assert not DbSlot.objects.filter(environment=lost).exists()
    assert not DbSlot.objects.filter(state=SlotState.RESETTING).exists()  # both reset
    assert Route53Dns().records() == sorted([host(kept), f"www.{DOMAIN}"])
    # Woken: it leased a slot and went on (to a DNS step this runtime cannot serve).
    assert queued.runs.get().steps.get(name="lease_db").status == StepStatus.SUCCEEDED
    audited = AuditEvent.objects.filter(action="reconcile", interface=Interface.CLI)
    assert {event.detail["kind"] for event in audited} == KINDS
    assert audited.get(detail__kind=reconciler.ORPHAN).detail["subject"] == lost.env_key

    client.force_login(admin)
    page = client.get("/health").content.decode()
    assert 'href="/health"' in page
    for kind in KINDS:
        assert f'data-kind="{kind}"' in page
    assert lost.env_key in page and host(lost) in page

    out = StringIO()
    call_command("reconcile", "--dry-run", stdout=out)
    assert "nothing to fix" in out.getvalue()


class WorkerDied(BaseException):
    """Ends the worker as SIGKILL would: no handler of the pipeline sees it."""


def test_a_run_whose_worker_died_is_resumed_to_the_end_by_a_pass(
        demo_project, pool_of, developer, monkeypatch):
    pool_of(1)

    def die(ctx: pipeline.Context) -> None:
        raise WorkerDied

    with monkeypatch.context() as patched, pytest.raises(WorkerDied):
        patched.setitem(pipeline.STEP_FUNCTIONS, "rollout", die)
        services.launch(demo_project, "main", actor=developer, interface=Interface.CLI)
    run = Run.objects.get()
    before = {step.name: step.finished_at for step in run.steps.all()}
    assert run.status == RunStatus.RUNNING and before["apply"] and not before["rollout"]

    tasks.reconcile()  # the claim is still alive: the worker may just be slow
    assert Run.objects.get().status == RunStatus.RUNNING
    Run.objects.filter(pk=run.pk).update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    tasks.reconcile()

    run.refresh_from_db()
    environment = run.environment
    environment.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert environment.status == EnvironmentStatus.READY
    steps = {step.name: step for step in run.steps.all()}
    assert all(step.status == StepStatus.SUCCEEDED for step in steps.values())
    # Resumed from its first unfinished step: what was done was not done again.
    assert {name: steps[name].finished_at for name in ("lease_db", "render", "apply")} == {
        name: before[name] for name in ("lease_db", "render", "apply")}
    assert list(LocalRuntime().inventory()) == [environment.env_key]
    assert AuditEvent.objects.get(action="reconcile").detail["kind"] == reconciler.CLAIM
    assert ReconcilePass.objects.first().interface == Interface.SYSTEM


def test_the_queries_of_a_pass_do_not_grow_with_the_environments(demo_project, pool_of):
    def queries_with(count: int) -> int:
        for number in range(count):
            Environment.objects.create(
                project=demo_project, branch=f"gone/{Environment.objects.count()}-{number}",
                env_key=f"k{number}", status=EnvironmentStatus.TORN_DOWN)
        with CaptureQueriesContext(connection) as queries:
            reconciler.run_pass(dry_run=True, actor=None, interface=Interface.CLI)
        return len(queries)

    assert queries_with(2) == queries_with(20)


def test_the_health_page_and_its_button_are_for_admins(admin, developer, qa, client):
    for user in (developer, qa):
        client.force_login(user)
        assert client.get("/health").status_code == 403
        assert client.post("/health/reconcile").status_code == 403
        assert 'href="/health"' not in client.get("/").content.decode()
    assert not ReconcilePass.objects.exists()

    client.force_login(admin)
    assert "No pass has run yet" in client.get("/health").content.decode()
    answer = client.post("/health/reconcile", follow=True)
    assert "reconcile pass: 0 finding(s) fixed" in answer.content.decode()
    assert ReconcilePass.objects.get().interface == Interface.WEB
    assert client.get("/health/reconcile").status_code == 405


@pytest.mark.django_db(transaction=False)
def test_the_schedule_exists_after_migrate():
    schedule = Schedule.objects.get(name="reconcile")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "environments.tasks.reconcile", Schedule.MINUTES, 1)


def test_a_dns_backend_that_cannot_list_is_skipped(demo_project, monkeypatch):
    monkeypatch.setattr(type(get("dns")), "records", lambda self: None)
    assert reconciler.find_dns_of_torn_down(timezone.now()) == []


def test_passes_older_than_a_week_are_dropped(db):
    old = ReconcilePass.objects.create(interface=Interface.SYSTEM,
                                       started_at=timezone.now() - timedelta(days=8))
    recent = ReconcilePass.objects.create(interface=Interface.SYSTEM,
                                          started_at=timezone.now() - timedelta(days=6))
    reconciler.run_pass(dry_run=True, actor=None, interface=Interface.CLI)
    assert not ReconcilePass.objects.filter(pk=old.pk).exists()
    assert ReconcilePass.objects.filter(pk=recent.pk).exists()
