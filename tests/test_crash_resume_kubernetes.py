"""Crash-resume on the kubernetes runtime against the test cluster: a worker SIGKILLed at every
step boundary of deploy, redeploy and teardown (and in the middle of applying the objects)
leaves a run the next worker finishes where an undisturbed one ends, with no object duplicated
or left behind.
(On the simulated cluster no container answers, so a deploy ends degraded: see README.)"""

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from environments.models import RunKind
from tests.support import kube, shared
from tests.support.crash import (
    CLAIM_SECONDS,
    Portal,
    Template,
    boundaries,
    comparable,
    copy_of,
)

EXPECTED = {
    RunKind.DEPLOY: {"status": "degraded", "runs": ["succeeded"], "free": 1,
                     "process_groups": 0, "worktrees": 0},
    RunKind.REDEPLOY: {"status": "degraded", "runs": ["succeeded"] * 2, "free": 1,
                       "process_groups": 0, "worktrees": 0},
    RunKind.TEARDOWN: {"status": "torn_down", "runs": ["succeeded"] * 2, "free": 2,
                       "objects": 0, "leased": [], "urls": []},
}
CASES = [(kind, kill) for kind in EXPECTED for kill in boundaries(kind)]
_namespaces = itertools.count(1)


def on_cluster(template: Template, var: Path, cluster: kube.Cluster,
               worker_id: str) -> tuple[Portal, str]:
    namespace = f"crash-{worker_id}-{next(_namespaces)}"  # the cluster is the whole run's
    portal = copy_of(template, var, PORTAL_RUNTIME="kubernetes",
                     PORTAL_KUBECONFIG=str(cluster.kubeconfig), PORTAL_K8S_NAMESPACE=namespace,
                     PORTAL_SMOKE_ATTEMPTS="1", PORTAL_READY_TIMEOUT="90",
                     PORTAL_SMOKE_IMAGE=kube.SMOKE_IMAGE)
    return portal, namespace


@pytest.fixture
def portal(crash_template: Template, tmp_path: Path, kube_cluster: kube.Cluster,
           worker_id: str) -> Iterator[Portal]:
    found, namespace = on_cluster(crash_template, tmp_path / "crash-var", kube_cluster,
                                  worker_id)
    yield found
    kube.delete_namespace(kube_cluster.client(), namespace)  # frees the node for later cases


@pytest.fixture(scope="session")
def references(crash_template: Template, tmp_path_factory: pytest.TempPathFactory,
               kube_cluster: kube.Cluster, run_dir: Path, worker_id: str) -> dict[str, dict]:
    """Where an undisturbed run of each kind ends (found once per run)."""
    def build() -> dict[str, dict]:
        found = {}
        for kind in EXPECTED:
            var = tmp_path_factory.mktemp(f"kube-reference-{kind}") / "var"
            portal, namespace = on_cluster(crash_template, var, kube_cluster, worker_id)
            try:
                found[kind] = portal.resume(portal.prepare(kind))
            finally:
                kube.delete_namespace(kube_cluster.client(), namespace)
            assert {k: found[kind][k] for k in EXPECTED[kind]} == EXPECTED[kind], found[kind]
        return found

    return shared.once(run_dir / "crash-references-kubernetes.json", build)


@pytest.mark.parametrize(("kind", "kill"), CASES, ids=[f"{k}:{' '.join(x)}" for k, x in CASES])
def test_a_worker_killed_mid_run_on_kubernetes_is_resumed_to_the_undisturbed_end(
        kind: str, kill: list[str], portal: Portal, references: dict) -> None:
    env_id = portal.prepare(kind, *kill)
    time.sleep(CLAIM_SECONDS + 0.2)  # the dead worker's claim runs out

    state = portal.resume(env_id)

    assert comparable(state) == comparable(references[kind]), state["detail"]
