"""The kubernetes runtime through the real pipeline on a real node: containerd runs the demo's
images (built from its Dockerfile, pulled from the node's registry), the smoke checks run as
Jobs that reach the components by their Service names, the DB pool is a MariaDB the pods reach
(scripts/k8s-cluster start --real, once per session)."""

import itertools
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.urls import reverse

from environments import git, services
from environments.backends import get
from environments.backends.runtime.kubernetes import KubernetesRuntime
from environments.models import Environment, EnvironmentStatus, Interface, Project
from tests.support import kube
from tests.support.commits import commit_on
from tests.support.tools import require_tool

# One worker under xdist (`--dist loadgroup`) runs them all: a machine has one real node (its
# containerd, kubelet, bridge and iptables rules are the host's).
pytestmark = [pytest.mark.real_node, pytest.mark.xdist_group("real_node"),
              pytest.mark.django_db(transaction=True)]
OURS = "app.kubernetes.io/managed-by=preview-portal"
_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def real_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[kube.RealNode]:
    lacking = kube.missing_real_node()
    require_tool(not lacking, f"the real test node (scripts/k8s-cluster build --real: {lacking})")
    node = kube.RealNode(tmp_path_factory.mktemp("node"))
    node.start()
    yield node
    node.stop()


@pytest.fixture
def on_the_node(settings, real_node: kube.RealNode) -> Iterator[str]:
    """The kubernetes runtime and the mysql pool of the real node, in a namespace of its own."""
    number = next(_namespaces)
    namespace, env = f"previews-r{number}", real_node.env()
    kube.use_cluster(settings, real_node.kubeconfig, namespace, ready_timeout=120,
                     smoke_image=env["PORTAL_SMOKE_IMAGE"])
    settings.PORTAL_DB_POOL = "mysql"
    settings.PORTAL_POOL_MYSQL_URL = env["PORTAL_POOL_MYSQL_URL"]
    settings.PORTAL_POOL_PREFIX = f"r{number}_"
    yield namespace
    kube.delete_namespace(real_node.client(), namespace)


@pytest.fixture
def demo_on_the_node(on_the_node: str, demo_project: Project, real_node: kube.RealNode,
                     pool_of) -> Project:
    """The demo, its components' image the node's registry's demo:{commit}."""
    for component in demo_project.components.all():
        component.image = real_node.env()["PORTAL_DEMO_IMAGE"] + ":{commit}"
        component.save()
    pool_of(1)
    return demo_project


def push_image(node: kube.RealNode, project: Project, branch: str, tmp_path: Path) -> str:
    """What CI does per commit: the branch's head built with its Dockerfile and pushed."""
    commit = git.run("-C", project.repository, "rev-parse", branch).strip()
    checkout = tmp_path / commit
    checkout.mkdir()
    archive = subprocess.run(["git", "-C", project.repository, "archive", commit],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    node.push_demo(checkout, commit)
    return commit


def launch(project: Project, branch: str, user) -> Environment:
    environment = services.launch(project, branch, actor=user, interface=Interface.CLI)
    environment.refresh_from_db()
    return environment


def run_log(environment: Environment) -> str:
    run = environment.runs.order_by("-id").first()
    return "\n".join(line.text for step in run.steps.all() for line in step.lines.all())


def pods(node: kube.RealNode, namespace: str) -> list[str]:
    return [pod["metadata"]["name"]
            for pod in kube.items(node.client(), "Pod", namespace, OURS)]


def test_the_demo_on_a_real_node_is_ready_its_smoke_jobs_pass_and_teardown_leaves_nothing(
        demo_on_the_node, real_node, on_the_node, developer, tmp_path, client):
    push_image(real_node, demo_on_the_node, "main", tmp_path)
    started = time.monotonic()
    environment = launch(demo_on_the_node, "main", developer)
    took = time.monotonic() - started
    assert environment.status == EnvironmentStatus.READY, (environment.status_detail,
                                                           run_log(environment))
    log = run_log(environment)
    assert "smoke" in log.lower(), log
    print(f"request to ready on the real node: {took:.1f} s")
    assert get("runtime").component_states(environment.env_key) == {
        "api": "1/1 pods ready", "web": "1/1 pods ready"}
    client.force_login(developer)
    page = client.get(reverse("environment_logs", args=[environment.pk, "api"]))
    assert "api listening on 0.0.0.0:8080" in page.content.decode()

    services.teardown(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()
    assert environment.status == EnvironmentStatus.TORN_DOWN, run_log(environment)
    deadline = time.monotonic() + 60
    while pods(real_node, on_the_node) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert pods(real_node, on_the_node) == []


def web_page(node: kube.RealNode, namespace: str, key: str) -> str:
    """The web component's page, from its pod's own address (the node's pods answer here)."""
    selector = KubernetesRuntime.selector(key, "web")
    running = [pod for pod in kube.items(node.client(), "Pod", namespace, selector)
               if pod["status"].get("podIP") and not pod["metadata"].get("deletionTimestamp")]
    address = running[0]["status"]["podIP"]
    with urllib.request.urlopen(f"http://{address}:8080/", timeout=10) as response:  # noqa: S310
        return response.read().decode()


def test_a_redeploy_rolls_out_the_new_commits_image(
        demo_on_the_node, real_node, on_the_node, demo_repo, developer, tmp_path):
    push_image(real_node, demo_on_the_node, "feature/checkout", tmp_path)
    environment = launch(demo_on_the_node, "feature/checkout", developer)
    assert environment.status == EnvironmentStatus.READY, run_log(environment)
    # The session's demo repository: an earlier test may have moved the branch on.
    banner = git.run("-C", str(demo_repo), "show", "feature/checkout:banner.txt").strip()
    assert banner in web_page(real_node, on_the_node, environment.env_key)

    commit_on(demo_repo, "feature/checkout", "banner.txt", "Demo shop — rolled out\n")
    newer = push_image(real_node, demo_on_the_node, "feature/checkout", tmp_path)
    services.redeploy(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.READY, run_log(environment)
    assert environment.commit == newer
    deadline = time.monotonic() + 60
    while "rolled out" not in web_page(real_node, on_the_node, environment.env_key):
        assert time.monotonic() < deadline, "the old pod still answers"
        time.sleep(0.5)


def test_a_branch_that_crashes_at_start_fails_with_crashloopbackoff_and_its_last_lines(
        demo_on_the_node, real_node, developer, tmp_path, settings):
    settings.PORTAL_READY_TIMEOUT = 45  # the demo's containers are up in 5-15 s here
    push_image(real_node, demo_on_the_node, "broken/crash-on-start", tmp_path)
    environment = launch(demo_on_the_node, "broken/crash-on-start", developer)
    assert environment.status == EnvironmentStatus.FAILED, run_log(environment)
    detail = environment.status_detail
    assert "CrashLoopBackOff" in detail, detail
    assert "refusing to start: crash-on-start is set on this branch" in detail, detail
