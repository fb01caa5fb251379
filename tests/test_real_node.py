"""The kubernetes runtime through the real pipeline on a real node: containerd runs the demo's
images (built from its Dockerfile, pulled from the node's registry), the smoke checks run as
Jobs that reach the components by their Service names, the DB pool is a MariaDB the pods reach
(scripts/k8s-cluster start --real, once per session)."""

import functools
import http.server
import itertools
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pymysql
import pytest
import yaml
from django.urls import reverse
from kubernetes import client

from environments import git, services
from environments.backends import get
from environments.backends.runtime.kubernetes import KubernetesRuntime
from environments.models import Environment, EnvironmentStatus, Interface, Project
from tests.support import kube
from tests.support.commits import commit_on
from tests.support.polling import wait_until
from tests.support.tools import require_tool
from tests.support.web import serving

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


def bridge_address() -> str:
    """The MAC address pods resolve the node's address (their gateway, the pool's MariaDB) to."""
    return Path(f"/sys/class/net/{kube.cluster_script().BRIDGE}/address").read_text().strip()


def bridge_ports() -> list[str]:
    return os.listdir(f"/sys/class/net/{kube.cluster_script().BRIDGE}/brif")


def test_pods_coming_and_going_leave_the_nodes_address_where_the_other_pods_cached_it(
        real_node):
    """A bridge takes its lowest port's MAC unless given one: a pod that had cached the MAC of
    a pod since deleted could not reach the node's MariaDB for 15 s and more."""
    api = real_node.client()
    # First in the module, so the node has no pod yet and the first to join would have changed
    # the bridge's address; the wait only covers a previous test's pods still going.
    wait_until("no pod on the bridge", lambda: bridge_ports() == [], timeout=60)
    seen = [bridge_address()]
    namespace = "bridge-test"
    kube.resource(api, "Namespace").create(body={"metadata": {"name": namespace}})
    try:
        for name in ("first", "second"):
            kube.resource(api, "Pod").create(namespace=namespace, body={
                "metadata": {"name": name},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "sleep", "image": real_node.env()["PORTAL_SMOKE_IMAGE"],
                    "command": ["sleep", "300"]}]}})
            wait_until(f"pod {name} running", lambda name=name: kube.resource(api, "Pod").get(
                name=name, namespace=namespace).status.phase == "Running")
            seen.append(bridge_address())
        kube.resource(api, "Pod").delete(name="first", namespace=namespace)
        wait_until("one pod left on the bridge", lambda: len(bridge_ports()) == 1)
        seen.append(bridge_address())
    finally:
        kube.delete_namespace(api, namespace)
    assert set(seen) == {seen[0]}, seen


def test_the_demo_on_a_real_node_is_ready_its_smoke_jobs_pass_and_teardown_leaves_nothing(
        demo_on_the_node, real_node, on_the_node, developer, tmp_path, client):
    real_node.push_branch(demo_on_the_node.repository, "main", tmp_path)
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
    wait_until("no pod left", lambda: pods(real_node, on_the_node) == [], timeout=60)


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
    real_node.push_branch(demo_on_the_node.repository, "feature/checkout", tmp_path)
    environment = launch(demo_on_the_node, "feature/checkout", developer)
    assert environment.status == EnvironmentStatus.READY, run_log(environment)
    # The session's demo repository: an earlier test may have moved the branch on.
    banner = git.run("-C", str(demo_repo), "show", "feature/checkout:banner.txt").strip()
    assert banner in web_page(real_node, on_the_node, environment.env_key)

    commit_on(demo_repo, "feature/checkout", "banner.txt", "Demo shop — rolled out\n")
    newer = real_node.push_branch(demo_on_the_node.repository, "feature/checkout", tmp_path)
    services.redeploy(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.READY, run_log(environment)
    assert environment.commit == newer
    wait_until("the new pod answers", lambda: "rolled out" in web_page(
        real_node, on_the_node, environment.env_key), timeout=60)


def test_a_branch_that_crashes_at_start_fails_with_crashloopbackoff_and_its_last_lines(
        demo_on_the_node, real_node, developer, tmp_path, settings):
    # It fails at the first CrashLoopBackOff (~25 s here); on a fresh node the first pull of the
    # branch's image comes first, and 45 s was once not enough for both.
    settings.PORTAL_READY_TIMEOUT = 90
    real_node.push_branch(demo_on_the_node.repository, "broken/crash-on-start", tmp_path)
    environment = launch(demo_on_the_node, "broken/crash-on-start", developer)
    assert environment.status == EnvironmentStatus.FAILED, run_log(environment)
    detail = environment.status_detail
    assert "CrashLoopBackOff" in detail, detail
    assert "refusing to start: crash-on-start is set on this branch" in detail, detail


# ---------------------------------------------------------------- the portal deployed from deploy/

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PORTAL_NAMESPACE, PREVIEWS_NAMESPACE = "preview-portal", "previews"
PORTAL_HOST = "portal.example.com"  # deploy/'s PORTAL_ALLOWED_HOSTS, which the probe names
# What registers the demo in the deployed portal, as a Job of its image: the components and
# smoke checks `make run` gives the demo, its repository at URL; then an admin and their token.
REGISTER = """
from django.contrib.auth import get_user_model
from environments import demo, tokens
from environments.models import Project
project = demo.register(demo.SOURCE)
Project.objects.filter(pk=project.pk).update(repository={url!r})
admin, _ = get_user_model().objects.get_or_create(
    username="admin", defaults={{"is_staff": True, "is_superuser": True}})
print(tokens.create(admin, "in-cluster test"))
"""


def overlay(directory: Path, node: kube.RealNode, database_url: str) -> Path:
    """What a deployment's own overlay sets (README, "Deploy the portal"), for the real node:
    the image from its registry, the Secret's values, its pool, no Redis or S3 there."""
    env = node.env()
    name, tag = env["PORTAL_SMOKE_IMAGE"].rsplit(":", 1)
    settings = {"PORTAL_BROKER": "orm", "PORTAL_REPORTS": "file", "PORTAL_POOL_SIZE": "1",
                "PORTAL_POOL_PREFIX": "incluster_", "PORTAL_SMOKE_IMAGE": f"{name}:{tag}",
                "PORTAL_DEMO_IMAGE": env["PORTAL_DEMO_IMAGE"], "PORTAL_INGRESS_ANNOTATIONS": "{}"}
    # REDIS_URL empty: no Redis on the node (the cache would otherwise be Redis too).
    secret = {"PORTAL_SECRET_KEY": secrets.token_urlsafe(40), "DATABASE_URL": database_url,
              "REDIS_URL": "", "PORTAL_POOL_MYSQL_URL": env["PORTAL_POOL_MYSQL_URL"]}
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY, directory)],
        "images": [{"name": "preview-portal", "newName": name, "newTag": tag}],
        "patches": [
            {"patch": yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "preview-portal", "namespace": PORTAL_NAMESPACE}, "data": settings})},
            {"patch": yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {
                "name": "preview-portal", "namespace": PORTAL_NAMESPACE}, "stringData": secret})},
            # One web pod is enough here, and starts sooner on two cores.
            {"patch": yaml.safe_dump({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
                "name": "preview-portal-web", "namespace": PORTAL_NAMESPACE},
                "spec": {"replicas": 1}})},
        ],
    }))
    return directory


def portal_database(node: kube.RealNode) -> str:
    """The deployed portal's own database, on the node's MariaDB (it goes with the node: a
    DROP would wait for the portal's pods to be gone); its DATABASE_URL."""
    pool = urllib.parse.urlsplit(node.env()["PORTAL_POOL_MYSQL_URL"])
    connection = pymysql.connect(host=pool.hostname, port=pool.port, user=pool.username,
                                 password=pool.password)
    with connection, connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE in_cluster_portal CHARACTER SET utf8mb4")
    return pool._replace(path="/in_cluster_portal").geturl()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        """A clone fetches every object: not worth a line each in the test's output."""


@contextmanager
def served_repository(repository: Path, address: str, directory: Path) -> Iterator[str]:
    """A bare copy of `repository` over git's dumb HTTP on `address`, which the pods reach: as
    the portal would reach a project's repository on GitHub."""
    bare = directory / "demo.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repository), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    handler = functools.partial(QuietFiles, directory=str(directory))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    with serving(server) as url:
        yield f"{url}/demo.git"


def job_log(node: kube.RealNode, name: str) -> str:
    """The log of a finished Job of the portal's namespace (its pod's)."""
    def done() -> dict | None:
        status = kube.resource(node.client(), "Job").get(
            name=name, namespace=PORTAL_NAMESPACE).to_dict().get("status", {})
        return status if status.get("succeeded") or status.get("failed") else None

    status = wait_until(f"Job {name}", done)
    core = client.CoreV1Api(node.client().client)
    pod = kube.items(node.client(), "Pod", PORTAL_NAMESPACE, f"job-name={name}")[-1]
    log = core.read_namespaced_pod_log(pod["metadata"]["name"], PORTAL_NAMESPACE)
    assert status.get("succeeded"), log
    return log


def deployment_ready(node: kube.RealNode, name: str) -> bool:
    found = kube.resource(node.client(), "Deployment").get(
        name=name, namespace=PORTAL_NAMESPACE).to_dict()
    return found.get("status", {}).get("readyReplicas") == found["spec"]["replicas"]


class InClusterPortal:
    """The deployed portal's web Service, from this machine (which routes ClusterIPs)."""

    def __init__(self, node: kube.RealNode, token: str = "") -> None:
        service = kube.resource(node.client(), "Service").get(
            name="preview-portal-web", namespace=PORTAL_NAMESPACE).to_dict()
        self.url = f"http://{service['spec']['clusterIP']}"
        self.token = token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        # The ALB's header: the portal redirects plain http to https (healthz aside).
        headers = {"Host": PORTAL_HOST, "X-Forwarded-Proto": "https",
                   "Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        request = urllib.request.Request(self.url + path, method=method, headers=headers,
                                         data=json.dumps(body).encode() if body else None)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def environment(self, env_id: int, statuses: set[str]) -> dict:
        def settled() -> dict | None:
            found = json.loads(self.call("GET", f"/api/v1/environments/{env_id}")[1])
            return found if found["status"] in statuses else None

        return wait_until(f"environment {env_id} {statuses}", settled)


@pytest.fixture
def deployed_portal(real_node: kube.RealNode, tmp_path: Path) -> Iterator[Path]:
    """deploy/ applied to the real node through an overlay (migrations first, as a rollout
    should); its namespaces and cluster-wide objects removed afterwards."""
    api = real_node.client()
    manifests = kube.kustomize_build(
        overlay(tmp_path / "overlay", real_node, portal_database(real_node)))
    try:
        for manifest in manifests:
            if manifest["kind"] != "Deployment":
                kube.server_side_apply(api, manifest, "deploy-test")
        job_log(real_node, "preview-portal-migrate")
        for manifest in manifests:
            if manifest["kind"] == "Deployment":
                kube.server_side_apply(api, manifest, "deploy-test")
        yield tmp_path
    finally:
        for manifest in manifests:
            if manifest["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
                kube.resource(api, manifest["kind"]).delete(name=manifest["metadata"]["name"])
        for name in (PORTAL_NAMESPACE, PREVIEWS_NAMESPACE):
            kube.delete_namespace(api, name)


def register_demo(node: kube.RealNode, repository_url: str) -> str:
    """The demo project and an admin's API token in the deployed portal, by a Job of its image
    with its settings (the migrations Job's pod); the Job's name."""
    migrate = kube.resource(node.client(), "Job").get(
        name="preview-portal-migrate", namespace=PORTAL_NAMESPACE).to_dict()
    pod = migrate["spec"]["template"]
    pod["metadata"] = {"labels": {"app.kubernetes.io/component": "register"}}
    container = pod["spec"]["containers"][0]
    container["name"] = "register"
    container["args"] = ["python", "manage.py", "shell", "-c", REGISTER.format(url=repository_url)]
    kube.resource(node.client(), "Job").create(namespace=PORTAL_NAMESPACE, body={
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "register-demo", "namespace": PORTAL_NAMESPACE},
        "spec": {"backoffLimit": 0, "template": pod}})
    return "register-demo"


def test_the_portal_deployed_from_deploy_serves_and_deploys_a_preview_as_its_service_account(
        real_node, deployed_portal, demo_repo, tmp_path):
    node_address = urllib.parse.urlsplit(real_node.env()["PORTAL_POOL_MYSQL_URL"]).hostname
    with served_repository(demo_repo, node_address, tmp_path / "git") as repository_url:
        # While web and worker start.
        registering = register_demo(real_node, repository_url)
        commit = real_node.push_branch(str(demo_repo), "main", tmp_path)
        wait_until("web and worker Ready", lambda: all(
            deployment_ready(real_node, f"preview-portal-{name}") for name in ("web", "worker")))
        portal = InClusterPortal(real_node, job_log(real_node, registering).splitlines()[-1])
        assert portal.call("GET", "/healthz") == (200, b"ok\n")

        status, body = portal.call("POST", "/api/v1/environments",
                                   {"project": "demo", "branch": "main"})
        assert status == 202, body
        environment = portal.environment(json.loads(body)["id"], {"ready", "degraded", "failed"})
    assert (environment["status"], environment["commit"]) == ("ready", commit), environment

    deployments = kube.items(real_node.client(), "Deployment", PREVIEWS_NAMESPACE, OURS)
    assert {d["metadata"]["labels"]["preview-portal/component"] for d in deployments} == {
        "api", "web"}
    # The deployed portal has no kubeconfig: only its ServiceAccount could have applied these.
    assert {field["manager"] for d in deployments for field in d["metadata"]["managedFields"]
            if field["operation"] == "Apply"} == {"preview-portal"}
    assert all(pod["status"]["phase"] == "Running" for pod in
               kube.items(real_node.client(), "Pod", PREVIEWS_NAMESPACE, OURS))

    status, body = portal.call("DELETE", f"/api/v1/environments/{environment['id']}")
    assert status in (200, 202), body
    portal.environment(environment["id"], {"torn_down"})
    assert pods(real_node, PREVIEWS_NAMESPACE) == []


# ---------------------------------------------------------------- the image cache


def test_building_the_real_node_prunes_images_whose_source_is_no_longer_current(
        tmp_path, monkeypatch):
    require_tool(shutil.which("buildah") and Path("/usr/bin/docker-registry").exists(),
                 "buildah and docker-registry (Debian packages)")
    monkeypatch.setenv("PORTAL_K8S_CACHE", str(tmp_path / "cache"))
    script = kube.cluster_script()
    # This session's node uses another cache: nothing of it is at stake here.
    monkeypatch.setattr(script, "BRIDGE", "pp-absent0")
    script.IMAGES_DIR.mkdir(parents=True)
    (tmp_path / "file").write_bytes(os.urandom(64 * 1024))

    def image(name: str = "") -> str:
        container = script.buildah("from", "scratch").strip()
        script.buildah("copy", container, str(tmp_path / "file"), f"/{name or 'step'}")
        return script.buildah("commit", "--rm", "--quiet", container, *filter(None, [name]))

    old, current = (f"{script.REGISTRY}/demo:{tag}" for tag in ("old", "current"))
    with script.Registry() as registry:
        for name in (old, current):
            image(name)
            script.push(name, registry)
    cached_step, stale_step = image().strip(), image().strip()
    blobs = script.REGISTRY_STORAGE / "docker/registry/v2/blobs"
    blobs_before = len(list(blobs.rglob("data")))

    script.prune({current}, [cached_step[:11]])

    left = json.loads(script.buildah("images", "--all", "--json", "--no-trunc"))
    assert [name for found in left for name in found["names"] or []] == [current]
    ids = {found["id"].removeprefix("sha256:") for found in left}
    assert cached_step in ids and stale_step not in ids
    assert script.pushed("demo", "current") and not script.pushed("demo", "old")
    assert len(list(blobs.rglob("data"))) < blobs_before
