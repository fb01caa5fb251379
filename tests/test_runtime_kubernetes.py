"""The kubernetes runtime through the real pipeline, against a real API server (etcd, control
plane and kwok's simulated node, started once per session by scripts/k8s-cluster)."""

import base64
import hashlib
import http.server
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from environments import demo, git, naming, pipeline, services
from environments.backends import BackendError, get
from environments.backends.runtime.kubernetes import ATTEMPTS, KubernetesRuntime
from environments.backends.runtime.manifests import RUNTIME_ROLE
from environments.models import Environment, EnvironmentStatus, Interface, StepStatus
from environments.smoke import runner
from tests.support import kube
from tests.support.commits import commit_on
from tests.support.polling import wait_until
from tests.support.web import serving

pytestmark = pytest.mark.django_db(transaction=True)
OURS = "app.kubernetes.io/managed-by=preview-portal"
KINDS = ("Deployment", "Service", "Ingress", "Secret", "ReplicaSet", "Pod", "ConfigMap")


def launch(project, branch, user, commit=None) -> Environment:
    environment = services.launch(project, branch, actor=user, interface=Interface.CLI,
                                  commit=commit)
    environment.refresh_from_db()
    return environment


def run_log(environment: Environment) -> str:
    run = environment.runs.order_by("-id").first()
    return "\n".join(line.text for step in run.steps.all() for line in step.lines.all())


def labelled(api, namespace: str | None, selector: str = OURS) -> list[str]:
    return [f"{kind} {item['metadata']['name']}" for kind in KINDS
            for item in kube.items(api, kind, namespace, selector)]


def available_replicas(api, name: str, namespace: str, wait: float = 30) -> int:
    """Eventually 1: on a loaded machine the Deployment's status can trail the pod's."""
    deadline = time.monotonic() + wait
    while True:
        status = kube.resource(api, "Deployment").get(name=name, namespace=namespace).status
        available = (status.to_dict() if status else {}).get("availableReplicas") or 0
        if available or time.monotonic() > deadline:
            return available
        time.sleep(0.2)


@pytest.fixture
def api(kube_cluster: kube.Cluster):
    return kube_cluster.client()


@pytest.fixture
def launched(kubernetes_runtime, demo_project, pool_of, developer) -> Environment:
    pool_of(1)
    return launch(demo_project, "feature/checkout", developer)


@pytest.fixture
def launch_with_base(kubernetes_runtime, demo_project, pool_of, developer
                     ) -> Callable[[str], Environment]:
    """Launches main of the demo project with these base manifests."""
    def launch_main(base: str) -> Environment:
        demo_project.base_manifests = base
        demo_project.save()
        pool_of(1)
        return launch(demo_project, "main", developer)

    return launch_main


def test_launch_applies_named_labelled_objects_and_rolls_out(launched, kubernetes_runtime, api,
                                                              demo_repo: Path):
    key, namespace = launched.env_key, kubernetes_runtime
    commit = git.resolve(str(demo_repo), "feature/checkout")
    steps = {s.name: s.status for s in launched.runs.get().steps.all()}
    assert steps["apply"] == steps["rollout"] == StepStatus.SUCCEEDED, run_log(launched)

    for component in ("web", "api"):
        name = naming.object_name(component, key)
        deployment = kube.resource(api, "Deployment").get(name=name, namespace=namespace).to_dict()
        assert deployment["metadata"]["labels"] == naming.labels(key, component)
        assert deployment["spec"]["selector"]["matchLabels"] == naming.labels(key, component)
        assert available_replicas(api, name, namespace) == 1  # kwok marked the pod Ready
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"ghcr.io/preview-portal/demo-{component}:{commit}"
        env = {var["name"]: var["value"] for var in container["env"]}
        assert env["ROLE"] == component and env["PORT"] == "8080"
        assert env["PREVIEW_BRANCH"] == "feature/checkout"
        # Peers by their Services, as a pod reaches them; browsers by the ingress hosts.
        assert env["PREVIEW_URL_API"] == f"http://{naming.object_name('api', key)}.{namespace}.svc/"
        web_host = naming.host(key, "feature/checkout", "web", "slug", "preview.localhost")
        assert env["PREVIEW_PUBLIC_URL_WEB"] == f"https://{web_host}/"
        assert "DATABASE_URL" not in env  # from the Secret, not in the spec
        assert container["envFrom"] == [{"secretRef": {"name": naming.object_name("db", key)}}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080,
                                                          "scheme": "HTTP"}
        assert container["resources"]["limits"]["memory"] == "256Mi"
        service = kube.resource(api, "Service").get(name=name, namespace=namespace).to_dict()
        assert service["spec"]["selector"] == naming.labels(key, component)
        ingress = kube.resource(api, "Ingress").get(name=name, namespace=namespace).to_dict()
        assert ingress["spec"]["ingressClassName"] == "alb"
        assert ingress["metadata"]["annotations"]["alb.ingress.kubernetes.io/target-type"] == "ip"
        host = ingress["spec"]["rules"][0]["host"]
        assert host == naming.host(key, "feature/checkout", component, "slug",
                                   "preview.localhost")
        assert launched.urls[component] == f"https://{host}/"

    secret = kube.resource(api, "Secret").get(name=naming.object_name("db", key),
                                              namespace=namespace).to_dict()
    database_url = base64.b64decode(secret["data"]["DATABASE_URL"]).decode()
    assert launched.slot.name in database_url
    rendered = launched.runs.get().rendered
    assert "DATABASE_URL: <redacted>" in rendered and database_url not in rendered
    assert f"image: ghcr.io/preview-portal/demo-web:{commit}" in rendered


def test_on_the_simulated_node_the_smoke_job_reports_nothing_and_the_environment_is_degraded(
        launched, kubernetes_runtime, api):
    # kwok runs no container: the smoke Job's pod "completes" with kwok's canned log.
    assert launched.status == EnvironmentStatus.DEGRADED
    assert "the smoke attempt reported no result" in launched.status_detail
    assert labelled(api, kubernetes_runtime, "batch.kubernetes.io/job-name") == []


@pytest.fixture
def simulated_job(monkeypatch: pytest.MonkeyPatch, api, tmp_path: Path) -> dict[str, dict]:
    """Each smoke Job "runs" here: what the Job and its ConfigMap hold is kept, and its pod's
    log is what attempt.py prints for a passing test (kwok runs no container)."""
    seen: dict[str, dict] = {}

    def output(runtime, namespace: str, name: str) -> str:
        seen["job"] = kube.resource(api, "Job").get(name=name, namespace=namespace).to_dict()
        seen["config_map"] = kube.resource(api, "ConfigMap").get(
            name=name, namespace=namespace).to_dict()
        job = tmp_path / "simulated-job"
        job.mkdir()
        (job / "attempt.py").write_bytes(runner.ATTEMPT.read_bytes())
        (job / "test_simulated.py").write_text("def test_the_job_ran():\n    pass\n")
        container = seen["job"]["spec"]["template"]["spec"]["containers"][0]
        env = {var["name"]: var["value"] for var in container["env"]} | {"PATH": os.environ["PATH"]}
        done = subprocess.run([sys.executable, "attempt.py", "60", "--", "test_simulated.py"],
                              cwd=job, env=env, capture_output=True, text=True, check=True)
        return "pulling nothing: simulated\n" + done.stdout

    monkeypatch.setattr(KubernetesRuntime, "_job_output", output)
    return seen


def test_each_smoke_attempt_is_a_job_holding_no_token_and_none_of_the_portals_secrets(
        kubernetes_runtime, demo_project, pool_of, developer, api, simulated_job, settings):
    pool_of(1)
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    attempt = environment.runs.get().smoke_attempts.get()
    assert (attempt.passed, attempt.failed) == (1, 0)
    assert b"test_the_job_ran" in get("storage").read(attempt.report_key)
    job, files = simulated_job["job"], simulated_job["config_map"]
    key, namespace = environment.env_key, kubernetes_runtime
    assert job["metadata"]["labels"]["preview-portal/environment"] == key
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["image"] == kube.SMOKE_IMAGE and container["resources"]["limits"]
    env = {var["name"]: var["value"] for var in container["env"]}
    assert not [name for name in env if name.startswith("PORTAL_") or "TOKEN" in name]
    assert not [name for name, value in env.items() if settings.SECRET_KEY in value]
    web = f"http://{naming.object_name('web', key)}.{namespace}.svc/"
    assert env["PREVIEW_URL_WEB"] == web
    paths = {item["path"] for item in pod["volumes"][0]["configMap"]["items"]}
    assert {"attempt.py", "preview_checks.py", "smoke/test_front_page.py"} <= paths
    assert len(files["data"]) == len(paths)
    assert f"the checks reach web at {web}" in run_log(environment)
    assert labelled(api, namespace, "batch.kubernetes.io/job-name") == []  # deleted after


def test_a_smoke_job_left_behind_by_a_failed_attempt_goes_with_the_teardown(
        kubernetes_runtime, demo_project, pool_of, developer, api, monkeypatch):
    def lost(runtime, namespace: str, name: str, timeout: float) -> str:
        raise BackendError("the worker lost the Job (simulated)")

    monkeypatch.setattr(KubernetesRuntime, "_wait_job", lost)
    pool_of(1)
    environment = launch(demo_project, "main", developer)
    assert environment.status == EnvironmentStatus.FAILED
    selector = f"preview-portal/environment={environment.env_key}"
    assert kube.items(api, "Job", kubernetes_runtime, selector)

    services.teardown(environment, actor=developer, interface=Interface.CLI)
    assert kube.items(api, "Job", kubernetes_runtime, selector) == []
    assert kube.items(api, "ConfigMap", kubernetes_runtime, selector) == []


def test_redeploy_with_a_new_commit_changes_only_the_image(launched, kubernetes_runtime, api,
                                                           demo_repo: Path, developer):
    namespace, key = kubernetes_runtime, launched.env_key
    name = naming.object_name("web", key)

    def snapshot() -> dict[str, dict]:
        return {kind: kube.resource(api, kind).get(name=name, namespace=namespace).to_dict()
                for kind in ("Deployment", "Service", "Ingress")}

    before = snapshot()
    # On the branch's history, whatever other tests of the session committed on main.
    older = git.run("-C", str(demo_repo), "rev-parse", "feature/checkout~1").strip()
    launch(launched.project, "feature/checkout", developer, commit=older)
    after = snapshot()

    old_pod, new_pod = (s["Deployment"]["spec"]["template"]["spec"] for s in (before, after))
    assert new_pod["containers"][0]["image"] == f"ghcr.io/preview-portal/demo-web:{older}"
    env = {v["name"]: v["value"] for v in new_pod["containers"][0]["env"]}
    assert env["PREVIEW_COMMIT"] == older
    for pod in (old_pod, new_pod):  # all else is the same, selector included
        container = pod["containers"][0]
        del container["image"]
        container["env"] = [v for v in container["env"] if v["name"] != "PREVIEW_COMMIT"]
    assert old_pod == new_pod
    assert before["Deployment"]["spec"]["selector"] == after["Deployment"]["spec"]["selector"]
    for kind in ("Service", "Ingress"):
        version = (s[kind]["metadata"]["resourceVersion"] for s in (before, after))
        assert len(set(version)) == 1, f"{kind} was written although nothing changed"
    log = run_log(launched)
    assert f"updated Deployment {namespace}/{name}" in log
    assert f"unchanged Service {namespace}/{name}" in log
    launched.refresh_from_db()
    assert launched.commit == older


def test_pod_logs_are_read_back_per_component(launched):
    text = get("runtime").logs(launched.env_key, "web", lines=2)
    assert text.splitlines() == ["listening on the PORT given in the environment",
                                 "GET /healthz 200"]
    assert get("runtime").component_states(launched.env_key) == {
        "api": "1/1 pods ready", "web": "1/1 pods ready"}


def test_the_api_stays_reachable_after_the_process_that_loaded_the_kubeconfig_exits(launched):
    from kubernetes.config import kube_config

    from environments.backends.runtime.kubernetes import KubernetesRuntime

    runtime = KubernetesRuntime()  # loaded, not connected yet: as when a worker is forked
    # What the exit of `manage.py qcluster`'s first process does to the workers it forked: the
    # kubeconfig loader's temp copies of the inline certificates are deleted.
    kube_config._cleanup_temp_files()
    assert runtime.component_states(launched.env_key)["web"] == "1/1 pods ready"


def test_address_is_the_ingress_load_balancer_hostname(launched, kubernetes_runtime, api):
    target = pipeline.target_for(launched, launched.commit)
    assert get("runtime").address(target) is None  # no load balancer controller here
    ingress = kube.resource(api, "Ingress")
    name = naming.object_name("web", launched.env_key)
    # Play the AWS Load Balancer Controller: it writes the status subresource.
    ingress.status.patch(
        name=name, namespace=kubernetes_runtime, content_type="application/merge-patch+json",
        body={"status": {"loadBalancer": {"ingress": [{"hostname": "previews.elb.example"}]}}},
    )
    assert get("runtime").address(target) == "previews.elb.example"


def test_teardown_leaves_nothing_labelled_ours(launched, kubernetes_runtime, api, developer):
    assert labelled(api, kubernetes_runtime)
    services.teardown(launched, actor=developer, interface=Interface.CLI)
    launched.refresh_from_db()

    assert launched.status == EnvironmentStatus.TORN_DOWN, run_log(launched)
    assert labelled(api, kubernetes_runtime) == []
    assert "all objects of this environment are gone" in run_log(launched)
    # Gone already: a second delete is not an error.
    lines: list[str] = []
    get("runtime").delete(launched.env_key, lines.append)
    assert lines == [f"nothing of this environment is left in namespace {kubernetes_runtime}"]


def objects_of(api, namespace: str, key: str) -> list[str]:
    """The environment's own objects (not its ReplicaSets and pods, which a new commit
    replaces)."""
    return [f"{kind} {item['metadata']['name']}" for kind in ("Deployment", "Service", "Ingress")
            for item in kube.items(api, kind, namespace, f"preview-portal/environment={key}")]


def ingress_hosts(api, namespace: str, key: str) -> list[str]:
    return [item["spec"]["rules"][0]["host"] for item in
            kube.items(api, "Ingress", namespace, f"preview-portal/environment={key}")]


def test_two_projects_preview_main_side_by_side_and_one_teardown_leaves_the_other(
        kubernetes_runtime, demo_project, demo_repo: Path, pool_of, developer, api):
    pool_of(2)
    shop = demo.register(demo_repo, "shop")
    first = launch(demo_project, "main", developer)
    second = launch(shop, "main", developer)
    namespace = kubernetes_runtime

    for environment in (first, second):
        steps = {s.name: s.status for s in environment.runs.get().steps.all()}
        assert steps["rollout"] == StepStatus.SUCCEEDED, run_log(environment)
        name = naming.object_name("web", environment.env_key)
        assert available_replicas(api, name, namespace) == 1
    assert first.env_key != second.env_key
    assert set(first.urls.values()).isdisjoint(second.urls.values())
    kept = objects_of(api, namespace, second.env_key)
    assert len(kept) == 6 and set(kept).isdisjoint(objects_of(api, namespace, first.env_key))
    assert set(ingress_hosts(api, namespace, first.env_key)).isdisjoint(
        ingress_hosts(api, namespace, second.env_key))

    services.teardown(first, actor=developer, interface=Interface.CLI)
    first.refresh_from_db()

    assert first.status == EnvironmentStatus.TORN_DOWN, run_log(first)
    assert labelled(api, namespace, f"preview-portal/environment={first.env_key}") == []
    assert objects_of(api, namespace, second.env_key) == kept
    assert available_replicas(api, naming.object_name("web", second.env_key), namespace) == 1
    second.refresh_from_db()
    assert second.is_active


def test_an_environment_keyed_under_the_old_rule_keeps_its_objects_and_hosts_on_redeploy(
        kubernetes_runtime, demo_project, demo_repo: Path, pool_of, developer, api,
        monkeypatch: pytest.MonkeyPatch):
    pool_of(1)
    old_key, namespace = hashlib.md5(b"main").hexdigest(), kubernetes_runtime
    with monkeypatch.context() as before_the_change:  # a portal keying on the branch alone
        before_the_change.setattr(naming, "env_key", lambda project, branch: old_key)
        environment = launch(demo_project, "main", developer)
    objects, hosts = objects_of(api, namespace, old_key), ingress_hosts(api, namespace, old_key)
    assert f"Deployment web-{old_key[:12]}" in objects
    newer = commit_on(demo_repo, "main", "banner.txt", "Demo shop — v2\n")

    again = launch(demo_project, "main", developer)  # the launch of a live branch redeploys it

    assert (again.pk, again.env_key, again.commit) == (environment.pk, old_key, newer)
    assert objects_of(api, namespace, old_key) == objects
    assert ingress_hosts(api, namespace, old_key) == hosts
    assert set(hosts) == {f"main-{old_key[:6]}-{c}.preview.localhost" for c in ("web", "api")}
    deployment = kube.resource(api, "Deployment").get(
        name=naming.object_name("web", old_key), namespace=namespace).to_dict()
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(newer)
    assert labelled(api, namespace, "preview-portal/environment="
                    + naming.env_key("demo", "main")) == []


# Its inventory is every namespace of the portal's label on the cluster: no other test of the run
# may make one meanwhile (tests/test_deploy_manifests.py's, in the same group).
@pytest.mark.xdist_group("cluster_wide")
def test_per_environment_namespace_holds_everything_and_goes_with_teardown(
        settings, kubernetes_runtime, demo_project, pool_of, developer, api):
    settings.PORTAL_K8S_NAMESPACE_MODE = "per-environment"
    # An earlier test's namespaces may still be terminating (deleting one is asynchronous).
    wait_until("no namespace of the portal's label on the cluster",
               lambda: not kube.items(api, "Namespace", None, OURS), timeout=60)
    pool_of(1)
    environment = launch(demo_project, demo.UNICODE_BRANCH, developer)
    namespace = naming.object_name(kubernetes_runtime, environment.env_key)

    assert environment.status == EnvironmentStatus.DEGRADED, run_log(environment)
    found = kube.resource(api, "Namespace").get(name=namespace).to_dict()
    assert found["metadata"]["labels"]["preview-portal/environment"] == environment.env_key
    assert len(kube.items(api, "Deployment", namespace, OURS)) == 2
    assert get("runtime").inventory() == {environment.env_key: [f"Namespace {namespace}"]}
    # The portal granted itself the runtime's rights there, and the Manifests tab says so.
    binding = api.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding"
                                ).get(name=RUNTIME_ROLE, namespace=namespace).to_dict()
    assert binding["roleRef"]["name"] == RUNTIME_ROLE
    assert [s["name"] for s in binding["subjects"]] == ["admin"]  # the test kubeconfig's user
    assert "kind: RoleBinding" in environment.runs.get().rendered
    # A redeploy finds it there (the API server's 409 AlreadyExists) and goes on.
    services.redeploy(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()
    assert environment.status == EnvironmentStatus.DEGRADED, run_log(environment)
    assert f"unchanged RoleBinding {namespace}/{RUNTIME_ROLE}" in run_log(environment)

    services.teardown(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()
    assert environment.status == EnvironmentStatus.TORN_DOWN, run_log(environment)
    names = [n["metadata"]["name"] for n in kube.items(api, "Namespace", None, OURS)]
    assert namespace not in names
    assert labelled(api, None, f"preview-portal/environment={environment.env_key}") == []


INVALID_PORT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
      - name: web
        ports: [{containerPort: 99999}]
"""


def test_invalid_base_manifest_is_refused_with_the_api_servers_message(
        kubernetes_runtime, developer, launch_with_base, api):
    environment = launch_with_base(INVALID_PORT)

    assert environment.status == EnvironmentStatus.FAILED
    assert "refused as invalid by the API server" in environment.status_detail
    assert "containerPort: Invalid value: 99999" in environment.status_detail
    assert "(temporary" not in environment.status_detail  # retrying the same cannot help
    # What was applied before the refusal is found by its labels and torn down.
    assert "Secret db-" + environment.env_key[:12] in labelled(api, kubernetes_runtime)
    services.teardown(environment, actor=developer, interface=Interface.CLI)
    assert labelled(api, kubernetes_runtime) == []


def test_base_manifest_of_an_unmanaged_kind_is_refused_before_anything_is_applied(
        kubernetes_runtime, launch_with_base, api):
    environment = launch_with_base("apiVersion: v1\nkind: Pod\nmetadata: {name: stray}\n")

    assert environment.status == EnvironmentStatus.FAILED
    assert "v1/Pod is not a kind the portal manages" in environment.status_detail
    assert labelled(api, kubernetes_runtime) == []


BASE_WITH_CONFIG = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, labels: {team: shop}}
data: {GREETING: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        envFrom: [{configMapRef: {name: settings}}]
        env: [{name: LOG_LEVEL, value: debug}]
"""


def test_project_base_manifests_get_the_same_transformations(
        kubernetes_runtime, launch_with_base, api):
    environment = launch_with_base(BASE_WITH_CONFIG)
    key, namespace = environment.env_key, kubernetes_runtime

    assert environment.runs.get().steps.get(name="rollout").status == StepStatus.SUCCEEDED
    config = kube.resource(api, "ConfigMap").get(name=naming.object_name("settings", key),
                                                 namespace=namespace).to_dict()
    assert config["metadata"]["labels"] == {"team": "shop", **naming.labels(key)}
    deployment = kube.resource(api, "Deployment").get(
        name=naming.object_name("web", key), namespace=namespace).to_dict()
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == naming.labels(key, "web")
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "web"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("ghcr.io/preview-portal/demo-web:")
    assert container["envFrom"] == [
        {"configMapRef": {"name": naming.object_name("settings", key)}},
        {"secretRef": {"name": naming.object_name("db", key)}},
    ]
    assert {"name": "LOG_LEVEL", "value": "debug"} in container["env"]


PASTED_FROM_KUBECTL = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: production
  uid: 0d6c6b3e-9d0b-4c3e-8f0a-5b1d2c3e4f50
  resourceVersion: "81723"
  generation: 3
  creationTimestamp: "2026-01-05T10:00:00Z"
  managedFields: [{manager: kubectl, operation: Update, apiVersion: v1}]
  ownerReferences:
  - {apiVersion: v1, kind: Secret, name: gone, uid: 1e1e1e1e-0000-0000-0000-000000000000}
data: {FEATURE: "on"}
status: {}
"""


def test_base_manifests_pasted_from_kubectl_get_apply_without_the_servers_fields(
        kubernetes_runtime, launch_with_base, api):
    environment = launch_with_base(PASTED_FROM_KUBECTL)

    assert environment.runs.get().steps.get(name="apply").status == StepStatus.SUCCEEDED, \
        run_log(environment)
    config = kube.resource(api, "ConfigMap").get(
        name=naming.object_name("settings", environment.env_key),
        namespace=kubernetes_runtime).to_dict()
    assert config["data"] == {"FEATURE": "on"}
    assert "ownerReferences" not in config["metadata"]  # else the garbage collector takes it
    assert "0d6c6b3e" not in environment.runs.get().rendered


def failing_base(mode: str = "", cpu: str = "50m") -> str:
    """A web Deployment whose pod kwok drives into `mode` (see scripts/k8s-cluster)."""
    labels = f"{{kwok.preview-portal.test/fail: {mode}}}" if mode else "{}"
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  template:
    metadata: {{labels: {labels}}}
    spec:
      containers:
      - name: web
        resources: {{requests: {{cpu: "{cpu}"}}}}
"""


@pytest.mark.parametrize(("base", "reasons"), [
    (failing_base(cpu="64"), ["Unschedulable: 0/1 nodes are available: 1 Insufficient cpu"]),
    (failing_base("crash-loop"), ["crashes at start (CrashLoopBackOff)", "event BackOff",
                                  "last lines of web in pod web-"]),
    (failing_base("unready"), ["readiness probe failing", "event Unhealthy: Readiness probe"]),
    (failing_base("image-pull"), ['ImagePullBackOff: Back-off pulling image "ghcr.io/',
                                  "event Failed: Failed to pull image"]),
], ids=["unschedulable", "crash-loop", "unready", "image-pull"])
def test_failed_rollout_names_the_reason_from_pod_status_and_events(
        settings, launch_with_base, base, reasons):
    settings.PORTAL_READY_TIMEOUT = 4
    environment = launch_with_base(base)

    assert environment.status == EnvironmentStatus.FAILED
    web = naming.object_name("web", environment.env_key)
    crash = "crash-loop" in base  # fails at once, not after the timeout
    assert f"{web} not rolled out{'' if crash else ' after 4 s'}" in environment.status_detail
    for reason in reasons:
        assert reason in environment.status_detail
        assert reason in run_log(environment)  # shown live, before the timeout


def test_reconcile_lists_then_removes_orphans_and_keeps_live_environments(
        launched, kubernetes_runtime, api):
    orphan_key = naming.env_key("demo", "deleted/long-ago")
    kube.resource(api, "ConfigMap").create(namespace=kubernetes_runtime, body={
        "metadata": {"name": naming.object_name("leftover", orphan_key),
                     "labels": naming.labels(orphan_key)},
    })
    out = StringIO()
    call_command("reconcile", "--dry-run", stdout=out)
    listed = out.getvalue()
    assert f"orphan {orphan_key}:" in listed
    assert launched.env_key not in listed
    assert kube.items(api, "ConfigMap", kubernetes_runtime, OURS)  # still there

    call_command("reconcile", stdout=StringIO())
    assert labelled(api, kubernetes_runtime, f"preview-portal/environment={orphan_key}") == []
    assert len(kube.items(api, "Deployment", kubernetes_runtime, OURS)) == 2  # the live one's
    out = StringIO()
    call_command("reconcile", "--dry-run", stdout=out)
    assert "no orphans" in out.getvalue()


def reply(handler: http.server.BaseHTTPRequestHandler, status: int, content_type: str,
          body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Unavailable(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        reply(self, 503, "application/json",
              json.dumps({"kind": "Status", "message": "etcd leader changed"}).encode())

    def log_message(self, *args: object) -> None:
        pass


def kubeconfig_for(url: str, path: Path) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


@pytest.fixture
def unavailable_api(tmp_path: Path) -> Iterator[Path]:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)) as url:
        _Unavailable.calls = 0
        yield kubeconfig_for(url, tmp_path / "kubeconfig")


def test_server_errors_are_retried_a_bounded_number_of_times_then_reported_retryable(
        settings, unavailable_api: Path):
    settings.PORTAL_RUNTIME = "kubernetes"
    settings.PORTAL_KUBECONFIG = str(unavailable_api)
    with pytest.raises(BackendError) as raised:
        get("runtime").logs(naming.env_key("demo", "main"), "web")
    assert raised.value.retryable
    assert "503" in str(raised.value) and "etcd leader changed" in str(raised.value)
    assert _Unavailable.calls == ATTEMPTS


class _PodLog(http.server.BaseHTTPRequestHandler):
    asked: list[str] = []

    def do_GET(self) -> None:
        type(self).asked.append(self.path)
        reply(self, 200, "text/plain", b"the tail\n")

    def log_message(self, *args: object) -> None:
        pass


def test_pod_logs_ask_the_api_server_for_the_last_lines_and_at_most_64_kib(
        settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PodLog)) as url:
        settings.PORTAL_KUBECONFIG = str(kubeconfig_for(url, tmp_path / "kubeconfig"))
        runtime = KubernetesRuntime()
        pod = {"metadata": {"name": "web-1", "creationTimestamp": "2025-01-01T00:00:00Z"},
               "spec": {"containers": [{"name": "web"}]}}
        monkeypatch.setattr(runtime, "_list", lambda *args, **kwargs: [pod])
        _PodLog.asked = []

        assert runtime.logs(naming.env_key("demo", "main"), "web", lines=200) == "the tail\n"
    # A log of a few huge lines (a minified dump, a binary) would otherwise be read whole.
    namespace = runtime.placement(naming.env_key("demo", "main")).namespace
    assert _PodLog.asked == [f"/api/v1/namespaces/{namespace}/pods/web-1/log?container=web"
                             "&limitBytes=65536&previous=false&tailLines=200"]
