"""Smoke checks after a deploy: the built-in checks and the branch's own tests run by pytest in a
subprocess against the real demo, attempts with retries, the verdict, reruns and resumes."""

import re

import pytest
from django.core.exceptions import ValidationError

from environments import dbpool, demo, pipeline, services
from environments.backends import get
from environments.models import (
    EnvironmentStatus,
    Interface,
    Run,
    RunKind,
    RunStatus,
    SmokeAttempt,
)
from environments.smoke.config import validate_smoke_config
from tests.support.runs import launch

pytestmark = pytest.mark.django_db(transaction=True)
BUILT_IN = ("health", "login", "database", "integration", "component")


def names(attempt: SmokeAttempt) -> list[str]:
    return [check["name"] for check in attempt.checks]


def test_a_deploy_runs_every_built_in_check_and_the_branch_tests_and_stores_the_report(
        demo_project, pool_of, developer):
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    run = environment.runs.get()
    attempt = run.smoke_attempts.get()
    assert (attempt.passed, attempt.failed, attempt.errors) == (7, 0, 0)
    for word in BUILT_IN:
        assert any(word in name for name in names(attempt)), (word, names(attempt))
    assert "smoke.test_front_page.test_front_page_names_the_branch_and_commit" in names(attempt)
    assert attempt.report_key == f"{environment.env_key}/run-{run.pk}/attempt-1.html"
    report = get("storage").read(attempt.report_key).decode()
    assert "test_login[api POST /login]" in report  # readable without the report's script
    assert "Smoke checks: demo main" in report


def test_a_branch_whose_login_is_broken_ends_degraded_naming_the_failing_check(
        demo_project, pool_of, developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 2
    pool_of(1)
    environment = launch(demo_project, "broken/login", developer)

    assert environment.status == EnvironmentStatus.DEGRADED
    assert environment.status_detail.startswith(
        "smoke checks failing after 2 attempts: test_login[api POST /login] (POST http://")
    assert "answered HTTP 401, expected 200" in environment.status_detail
    attempts = list(environment.runs.get().smoke_attempts.all())
    assert [(a.number, a.passed, a.failed) for a in attempts] == [(1, 6, 1), (2, 6, 1)]
    assert all(a.failures == ["test_login[api POST /login]"] for a in attempts)
    # Degraded, not failed: it stays up for people to look at.
    states = get("runtime").component_states(environment.env_key)
    assert all(state.startswith("running") for state in states.values()), states


def test_an_app_that_warms_up_passes_on_a_later_attempt_and_every_attempt_is_kept(
        demo_project, pool_of, developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 5
    settings.PORTAL_SMOKE_BACKOFF = 1
    pool_of(1)
    environment = launch(demo_project, "slow/warm-up", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    run = environment.runs.get()
    attempts = list(run.smoke_attempts.all())
    assert len(attempts) >= 2
    assert attempts[0].failed and "test_login[api POST /login]" in attempts[0].failures
    assert attempts[-1].ok
    assert [a.number for a in attempts] == list(range(1, len(attempts) + 1))
    for attempt in attempts:
        assert get("storage").read(attempt.report_key)
    log = [line.text for line in run.steps.get(name="smoke").lines.all()]
    assert "waiting 1 s before attempt 2" in log


def test_the_database_check_looks_in_the_environments_own_slot(demo_project, pool_of,
                                                               developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    # The app writes items; a check told to find the row in another table must not pass.
    demo_project.smoke = {**demo.SMOKE, "database": [
        {**demo.SMOKE["database"][0], "table": "seed_info", "column": "note"}]}
    demo_project.save()
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.DEGRADED
    failing = environment.runs.get().smoke_attempts.last()
    check = next(c for c in failing.checks if not c["ok"])
    assert check["name"] == "test_database_row_written_by_the_app_is_in_its_slot[api POST /items]"
    assert re.match(r"no row with note = 'smoke-\d+-\d-[0-9a-f]{8}' in seed_info of this "
                    r"environment's database preview_01\.sqlite3", check["detail"])


def test_the_database_check_reaches_a_mysql_slot_and_the_report_shows_no_password(
        demo_project, pool_of, developer, mysql_pool):
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    attempt = environment.runs.get().smoke_attempts.get()
    assert attempt.ok
    slot = environment.slot
    password = dbpool.slot_connection(slot).password
    assert password and password.encode() not in get("storage").read(attempt.report_key)


def test_rerunning_the_checks_of_a_degraded_environment_records_a_new_run(
        demo_project, pool_of, developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    pool_of(1)
    environment = launch(demo_project, "broken/login", developer)
    assert environment.status == EnvironmentStatus.DEGRADED

    services.rerun_smoke(environment, actor=developer, interface=Interface.WEB)
    environment.refresh_from_db()

    rerun = environment.runs.get(kind=RunKind.SMOKE)
    assert [s.name for s in rerun.steps.all()] == ["smoke", "report", "notify"]
    assert rerun.smoke_attempts.get().report_key.endswith(f"/run-{rerun.pk}/attempt-1.html")
    assert environment.status == EnvironmentStatus.DEGRADED
    assert "test_login" in environment.status_detail


def test_a_resumed_smoke_step_goes_on_numbering_its_attempts(demo_project, pool_of, developer,
                                                             settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    pool_of(1)
    environment = launch(demo_project, "broken/login", developer)
    run = environment.runs.get()
    step = run.steps.get(name="smoke")

    # As if the worker had died after attempt 1 of 2 and another had claimed the run.
    settings.PORTAL_SMOKE_ATTEMPTS = 2
    Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, claimed_by="second")
    pipeline.smoke(pipeline.Context(run=Run.objects.get(pk=run.pk), step=step))
    pipeline.smoke(pipeline.Context(run=Run.objects.get(pk=run.pk), step=step))

    assert [a.number for a in run.smoke_attempts.all()] == [1, 2]
    assert run.smoke_attempts.get(number=2).report_key.endswith("/attempt-2.html")
    assert step.lines.last().text == "smoke checks already ran (2 attempts)"


def test_a_smoke_test_path_missing_from_the_branch_is_named_in_the_detail(
        demo_project, pool_of, developer, settings):
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    demo_project.smoke = {**demo.SMOKE, "tests": "no/such/folder"}
    demo_project.save()
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.DEGRADED
    assert "pytest" in environment.status_detail
    assert "no/such/folder" in environment.status_detail


@pytest.mark.parametrize("config, problem", [
    ({"logins": []}, "unknown key 'logins'"),
    ({"image": ["python:3.11"]}, "image: the smoke Jobs' image on Kubernetes"),
    ({"tests": "../outside"}, "tests: a relative path inside the repository"),
    ({"tests": "."}, "tests: a relative path inside the repository"),
    ({"tests": "--rootdir=/"}, "tests: a path, not a pytest option: it may not start with '-'"),
    ({"tests": "-pevil"}, "tests: a path, not a pytest option"),
    ({"login": {"component": "api"}}, "login: a list of requests"),
    ({"login": [{"component": "api", "path": "login"}]}, "login[0]: path: starts with /"),
    ({"database": [{"component": "api", "path": "/items", "table": "items; DROP", "column": "n"}]},
     "database[0]: table: a plain SQL name"),
])
def test_a_smoke_configuration_that_cannot_work_is_refused(config, problem):
    with pytest.raises(ValidationError, match=re.escape(problem)):
        validate_smoke_config(config)
    validate_smoke_config(demo.SMOKE | {"image": "registry.example.com/shop-smoke:1"})
