"""/metrics in Prometheus format, and JSON log lines carrying the run's ids."""

import io
import json
import logging

import pytest
from django.test import Client

from environments import services
from environments.models import Interface
from portal import logs

pytestmark = pytest.mark.django_db(transaction=True)


def test_metrics_count_environments_slots_and_time_runs_and_steps(
        demo_project, pool_of, developer):
    pool_of(2)
    services.launch(demo_project, "main", actor=developer, interface=Interface.API)
    services.launch(demo_project, "feature/checkout", actor=developer, interface=Interface.API)

    answer = Client().get("/metrics")
    lines = answer.content.decode().splitlines()

    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'preview_environments{status="ready"} 2' in lines
    assert 'preview_pool_slots{state="leased"} 2' in lines
    assert 'preview_pool_slots{state="free"} 0' in lines
    assert "preview_queue_length 0" in lines
    assert 'preview_run_duration_seconds_count{kind="deploy",status="succeeded"} 2' in lines
    assert 'preview_step_duration_seconds_count{name="rollout"} 2' in lines
    assert "main" not in answer.content.decode()  # no branch names leak out


def test_every_log_line_of_a_run_names_its_environment_and_run(
        demo_project, pool_of, developer):
    pool_of(1)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.ContextFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        environment = services.launch(demo_project, "main", actor=developer, interface="api")
    finally:
        root.removeHandler(handler)

    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    run_lines = [e for e in entries if e.get("run")]
    assert {e["environment"] for e in run_lines} == {environment.pk}
    assert any(e["logger"] == "preview_portal.pipeline" and "rollout" in e["message"]
               for e in run_lines)
    assert any(e["logger"] == "preview_portal.notify" for e in run_lines)  # not ours: context
