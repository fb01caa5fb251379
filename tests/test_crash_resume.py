"""Crash-resume: a worker SIGKILLed at every step boundary of deploy, redeploy and teardown (and
once in the middle of a step) leaves a run that the next worker finishes, ending exactly where
an undisturbed run ends: nothing duplicated, nothing leaked. Real processes, real git, a portal
database shared by the worker processes (a SQLite file, or in the parity run a database of each
case's own on the MariaDB of DATABASE_URL); the queue is django-q2's ORM broker in that database.
"""

import time
from pathlib import Path

import pytest

from environments.models import RunKind
from tests.support import shared
from tests.support.crash import (
    CLAIM_SECONDS,
    Portal,
    Template,
    boundaries,
    comparable,
    copy_of,
)
from tests.support.live import kill_previews

EXPECTED = {
    RunKind.DEPLOY: {"status": "ready", "runs": ["succeeded"], "free": 1, "process_groups": 2,
                     "worktrees": 1},
    RunKind.REDEPLOY: {"status": "ready", "runs": ["succeeded"] * 2, "free": 1,
                       "process_groups": 2, "worktrees": 1},
    RunKind.TEARDOWN: {"status": "torn_down", "runs": ["succeeded"] * 2, "free": 2,
                       "process_groups": 0, "worktrees": 0, "leased": [], "urls": []},
}
CASES = [(kind, kill) for kind in EXPECTED for kill in boundaries(kind)]


@pytest.fixture
def portal(crash_template: Template, tmp_path: Path):
    var = tmp_path / "crash-var"  # not "var": that one is the test's own (conftest)
    yield copy_of(crash_template, var)
    kill_previews(var)


@pytest.fixture(scope="session")
def references(crash_template: Template, tmp_path_factory: pytest.TempPathFactory,
               run_dir: Path) -> dict[str, dict]:
    """Where an undisturbed run of each kind ends (found once per run)."""
    def build() -> dict[str, dict]:
        found = {}
        for kind in EXPECTED:
            var = tmp_path_factory.mktemp(f"reference-{kind}") / "var"
            portal = copy_of(crash_template, var)
            try:
                found[kind] = portal.resume(portal.prepare(kind))
            finally:
                kill_previews(var)
            assert {k: found[kind][k] for k in EXPECTED[kind]} == EXPECTED[kind], found[kind]
        return found

    return shared.once(run_dir / "crash-references-local.json", build)


@pytest.mark.parametrize(("kind", "kill"), CASES, ids=[f"{k}:{' '.join(x)}" for k, x in CASES])
def test_a_worker_killed_mid_run_is_resumed_to_the_undisturbed_end(
        kind: str, kill: list[str], portal: Portal, references: dict) -> None:
    env_id = portal.prepare(kind, *kill)
    time.sleep(CLAIM_SECONDS + 0.2)  # the dead worker's claim runs out

    state = portal.resume(env_id)  # the queued task is redelivered to a fresh worker

    assert comparable(state) == comparable(references[kind]), state["detail"]


def test_a_teardown_during_a_deploy_wins_and_nothing_survives(portal: Portal) -> None:
    # Processes run, the deploy is unfinished.
    env_id = portal.prepare(RunKind.DEPLOY, "--kill-before", "rollout")
    portal.call("manage.py", "teardown", str(env_id), "--user", "admin")
    time.sleep(CLAIM_SECONDS + 0.2)

    state = portal.resume(env_id)

    assert state["status"] == "torn_down"
    assert state["runs"] == ["cancelled", "succeeded"]
    assert (state["process_groups"], state["worktrees"], state["free"]) == (0, 0, 2)
