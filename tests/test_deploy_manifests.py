"""The portal's own deployment (deploy/, deploy/per-environment/) against the test cluster: the
kustomize output is accepted by a real API server, and the ServiceAccount's RBAC is enough for the
kubernetes runtime to deploy and tear down a preview in either namespace mode, and no more."""

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from environments import services
from environments.backends import get
from environments.backends.runtime.manifests import RUNTIME_ROLE
from environments.models import EnvironmentStatus, Interface, StepStatus
from tests.support import kube
from tests.support.runs import launch

# Its namespaces, ClusterRoles and per-environment namespaces have fixed names on the run's one
# cluster: one worker runs them (with the runtime's own per-environment test).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("cluster_wide")]
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
PORTAL_NAMESPACE, PREVIEWS_NAMESPACE = "preview-portal", "previews"
ACCOUNT = "preview-portal"
ACCOUNT_USER = f"system:serviceaccount:{PORTAL_NAMESPACE}:{ACCOUNT}"
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding",
              "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
CLUSTER_WIDE = RBAC_KINDS - {"Namespace", "ServiceAccount", "RoleBinding"}
MODES = {"shared": DEPLOY, "per-environment": DEPLOY / "per-environment"}
OURS = {"app.kubernetes.io/managed-by": "preview-portal"}


def rendered(mode: str = "shared") -> list[dict[str, Any]]:
    return kube.kustomize_build(MODES[mode])


def apply(api: DynamicClient, manifest: dict[str, Any], dry_run: bool) -> None:
    kube.server_side_apply(api, manifest, "deploy-test", dry_run)


@pytest.fixture(scope="module")
def admin_api(kube_cluster: kube.Cluster) -> Iterator[DynamicClient]:
    """The cluster's admin, with the portal's namespaces created for real and removed after the
    module (a deleted namespace refuses new objects until it is gone: one pair for all)."""
    api = kube_cluster.client()
    for name in (PORTAL_NAMESPACE, PREVIEWS_NAMESPACE):
        apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, False)
    yield api
    for name in (PORTAL_NAMESPACE, PREVIEWS_NAMESPACE):
        kube.delete_namespace(api, name)  # frees the node for later tests


def service_account_kubeconfig(kube_cluster: kube.Cluster, admin_api: DynamicClient,
                               path: Path) -> Path:
    """A kubeconfig that authenticates as the portal's ServiceAccount (TokenRequest API)."""
    core = client.CoreV1Api(admin_api.client)
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    token = core.create_namespaced_service_account_token(ACCOUNT, PORTAL_NAMESPACE,
                                                         request).status.token
    kubeconfig = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    kubeconfig["users"] = [{"name": kubeconfig["contexts"][0]["context"]["user"],
                            "user": {"token": token}}]
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("mode", MODES)
def test_rendered_manifests_pass_a_server_side_dry_run_apply(admin_api, mode):
    manifests = rendered(mode)
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "Ingress", "Job", "ConfigMap", "Secret", "ServiceAccount",
            "ClusterRole", "RoleBinding" if mode == "shared" else "ClusterRoleBinding"} <= kinds
    config_map = next(m for m in manifests if m["kind"] == "ConfigMap")
    assert config_map["data"]["PORTAL_K8S_NAMESPACE_MODE"] == mode
    for manifest in manifests:
        apply(admin_api, manifest, dry_run=True)


@pytest.mark.parametrize("mode", MODES)
def test_an_overlays_image_as_the_readme_writes_it_reaches_every_pod(mode, tmp_path):
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(MODES[mode], tmp_path)],
        "images": [{"name": "preview-portal", "newName": "registry.example/preview-portal",
                    "newTag": "v1"}]}))
    pods = [m["spec"]["template"]["spec"] for m in kube.kustomize_build(tmp_path)
            if m["kind"] in {"Deployment", "Job"}]
    assert len(pods) == 3
    assert {c["image"] for pod in pods for c in pod["containers"]} == {
        "registry.example/preview-portal:v1"}


def test_shared_mode_binds_nothing_cluster_wide():
    bindings = [m for m in rendered("shared") if m["kind"].endswith("Binding")]
    assert [(m["kind"], m["metadata"]["namespace"]) for m in bindings] == [
        ("RoleBinding", PREVIEWS_NAMESPACE)]


@pytest.fixture
def rbac_of(admin_api: DynamicClient) -> Iterator[Callable[[str], None]]:
    """Applies a mode's RBAC objects for real; its cluster-wide ones go again after the test."""
    applied: list[dict[str, Any]] = []

    def apply_rbac(mode: str) -> None:
        for manifest in rendered(mode):
            if manifest["kind"] in RBAC_KINDS:
                apply(admin_api, manifest, dry_run=False)
                applied.append(manifest)

    yield apply_rbac
    for manifest in applied:
        if manifest["kind"] in CLUSTER_WIDE:
            admin_api.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"]
                                    ).delete(name=manifest["metadata"]["name"])


def run_as_the_service_account(settings: Any, kubeconfig: Path, mode: str) -> None:
    kube.use_cluster(settings, kubeconfig, PREVIEWS_NAMESPACE, mode)
    settings.PORTAL_SMOKE_ATTEMPTS = 1  # kwok runs no container: the app never answers


def deploy_and_tear_down(demo_project: Any, developer: Any) -> Any:
    """A preview through the real pipeline, as far as the rights go; the torn-down environment."""
    environment = launch(demo_project, "feature/checkout", developer)
    steps = {s.name: s.status for s in environment.runs.get().steps.all()}
    assert steps["apply"] == steps["rollout"] == StepStatus.SUCCEEDED, environment.status_detail
    assert environment.status == EnvironmentStatus.DEGRADED  # ready, but nothing answers
    runtime = get("runtime")
    assert runtime.logs(environment.env_key, "web", lines=1)  # pods/log
    assert list(runtime.inventory()) == [environment.env_key]  # what reconcile lists

    services.teardown(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()
    assert environment.status == EnvironmentStatus.TORN_DOWN, environment.status_detail
    assert runtime.inventory() == {}
    return environment


def refused(call: Callable[[], Any]) -> ApiException:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value.body
    return caught.value


def assert_no_secrets_outside(core: client.CoreV1Api) -> None:
    refused(lambda: core.list_namespaced_secret("kube-system"))
    refused(lambda: core.list_namespaced_secret(PORTAL_NAMESPACE))  # the portal's own
    refused(lambda: core.list_secret_for_all_namespaces())


def test_the_service_account_deploys_and_tears_down_but_reads_no_other_secrets(
        settings, kube_cluster, admin_api, rbac_of, demo_project, pool_of, developer, tmp_path):
    rbac_of("shared")
    kubeconfig = service_account_kubeconfig(kube_cluster, admin_api, tmp_path / "sa-kubeconfig")
    run_as_the_service_account(settings, kubeconfig, "shared")
    pool_of(1)

    environment = deploy_and_tear_down(demo_project, developer)
    assert get("runtime").placement(environment.env_key).namespace == PREVIEWS_NAMESPACE

    assert_no_secrets_outside(client.CoreV1Api(
        config.new_client_from_config(str(kubeconfig), persist_config=False)))


def namespace_body(name: str, labels: dict[str, str] | None = None) -> client.V1Namespace:
    return client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels))


def binding_body(role: str) -> client.V1RoleBinding:
    return client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="taken"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                  name=role),
        subjects=[client.RbacV1Subject(kind="User", name=ACCOUNT_USER,
                                       api_group="rbac.authorization.k8s.io")])


def wait_for_the_policy(core: client.CoreV1Api) -> None:
    """The admission policy is loaded asynchronously: wait until it refuses (a dry run) what it
    should, before anything real is tried."""
    deadline = time.monotonic() + 30
    while True:
        try:
            core.create_namespace(namespace_body("previews-unlabelled"), dry_run="All")
        except ApiException as exc:
            if exc.status == 403:
                return
            raise
        assert time.monotonic() < deadline, "the admission policy never took effect"
        time.sleep(0.2)


def test_per_environment_the_service_account_manages_only_its_own_namespaces(
        settings, kube_cluster, admin_api, rbac_of, demo_project, pool_of, developer, tmp_path):
    rbac_of("per-environment")
    admin_core = client.CoreV1Api(admin_api.client)
    bystander = "bystander"  # somebody else's namespace
    apply(admin_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": bystander}},
          False)
    kubeconfig = service_account_kubeconfig(kube_cluster, admin_api, tmp_path / "sa-kubeconfig")
    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig), persist_config=False))
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    wait_for_the_policy(core)
    run_as_the_service_account(settings, kubeconfig, "per-environment")
    pool_of(1)
    try:
        environment = deploy_and_tear_down(demo_project, developer)
        namespace = get("runtime").placement(environment.env_key).namespace
        assert namespace.startswith(f"{PREVIEWS_NAMESPACE}-")
        applied = "\n".join(line.text for line in environment.runs.order_by("id").first()
                            .steps.get(name="apply").lines.all())
        assert f"created RoleBinding {namespace}/{RUNTIME_ROLE}" in applied
        with pytest.raises(ApiException) as gone:
            admin_core.read_namespace(namespace)
        assert gone.value.status == 404

        assert_no_secrets_outside(core)
        # Somebody else's namespace: not deleted, not taken over by a label, nothing granted in it.
        for call in (lambda: core.delete_namespace(bystander),
                     lambda: core.patch_namespace(bystander, {"metadata": {"labels": OURS}}),
                     lambda: rbac.create_namespaced_role_binding(
                         bystander, binding_body(RUNTIME_ROLE))):
            assert "preview-portal-own-namespaces" in refused(call).body
        refused(lambda: core.list_namespaced_secret(bystander))
        # No namespace without the label; and in one of its own, no role but the runtime's.
        assert "preview-portal-own-namespaces" in refused(
            lambda: core.create_namespace(namespace_body("previews-unlabelled"))).body
        core.create_namespace(namespace_body("previews-probe", OURS))
        refused(lambda: rbac.create_namespaced_role_binding(
            "previews-probe", binding_body("cluster-admin")))
        core.delete_namespace("previews-probe")
        assert admin_core.read_namespace(bystander).metadata.labels.get(
            "app.kubernetes.io/managed-by") is None
    finally:
        for name in (bystander, "previews-probe"):
            kube.delete_namespace(admin_api, name)
