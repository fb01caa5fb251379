"""The portal's own deployment (deploy/) against the test cluster: the kustomize output is
accepted by a real API server, and the ServiceAccount's RBAC is enough for the kubernetes runtime
to deploy and tear down a preview, and no more."""

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from environments import services
from environments.backends import get
from environments.models import EnvironmentStatus, Interface, StepStatus
from tests import kube
from tests.conftest import launch, require_tool

pytestmark = pytest.mark.django_db(transaction=True)
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
# Built from the Go module proxy by `make kustomize`, cached outside the repository.
KUSTOMIZE = Path(os.environ.get(
    "KUSTOMIZE", Path.home() / ".cache/preview-portal/kustomize-v5.5.0/kustomize"))
PORTAL_NAMESPACE, PREVIEWS_NAMESPACE = "preview-portal", "previews"
ACCOUNT = "preview-portal"
RBAC_KINDS = {"Namespace", "ServiceAccount", "Role", "RoleBinding"}


def rendered() -> list[dict[str, Any]]:
    require_tool(KUSTOMIZE.is_file(), f"kustomize at {KUSTOMIZE} (make kustomize builds it)")
    output = subprocess.run([str(KUSTOMIZE), "build", str(DEPLOY)], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def apply(api: DynamicClient, manifest: dict[str, Any], dry_run: bool) -> None:
    resource = api.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    resource.server_side_apply(
        body=manifest, namespace=manifest["metadata"].get("namespace"),
        field_manager="deploy-test", dry_run="All" if dry_run else None,
    )


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


def test_rendered_manifests_pass_a_server_side_dry_run_apply(admin_api):
    manifests = rendered()
    kinds = {m["kind"] for m in manifests}
    assert {"Deployment", "Service", "Ingress", "Job", "ConfigMap", "Secret", "ServiceAccount",
            "Role", "RoleBinding"} <= kinds
    # Least privilege: nothing bound cluster-wide in the shared-namespace base.
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    for manifest in manifests:
        apply(admin_api, manifest, dry_run=True)


def test_the_service_account_deploys_and_tears_down_but_reads_no_other_secrets(
        settings, kube_cluster, admin_api, demo_project, pool_of, developer, tmp_path):
    for manifest in rendered():
        if manifest["kind"] in RBAC_KINDS:
            apply(admin_api, manifest, dry_run=False)
    kubeconfig = service_account_kubeconfig(kube_cluster, admin_api, tmp_path / "sa-kubeconfig")
    settings.PORTAL_RUNTIME = "kubernetes"
    settings.PORTAL_KUBECONFIG = str(kubeconfig)
    settings.PORTAL_KUBE_CONTEXT = ""
    settings.PORTAL_K8S_NAMESPACE = PREVIEWS_NAMESPACE
    settings.PORTAL_K8S_NAMESPACE_MODE = "shared"
    settings.PORTAL_READY_TIMEOUT = 30
    settings.PORTAL_SMOKE_ATTEMPTS = 1  # kwok runs no container: the app never answers
    pool_of(1)

    environment = launch(demo_project, "feature/checkout", developer)
    steps = {s.name: s.status for s in environment.runs.get().steps.all()}
    assert steps["apply"] == steps["rollout"] == StepStatus.SUCCEEDED, steps
    assert environment.status == EnvironmentStatus.DEGRADED  # ready, but nothing answers
    runtime = get("runtime")
    assert runtime.logs(environment.env_key, "web", lines=1)  # pods/log
    assert list(runtime.inventory()) == [environment.env_key]  # what reconcile lists

    services.teardown(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()
    assert environment.status == EnvironmentStatus.TORN_DOWN
    assert runtime.inventory() == {}

    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig),
                                                          persist_config=False))
    for read in (lambda: core.list_namespaced_secret("kube-system"),
                 lambda: core.list_namespaced_secret(PORTAL_NAMESPACE),  # the portal's own
                 lambda: core.list_secret_for_all_namespaces()):
        with pytest.raises(ApiException) as refused:
            read()
        assert refused.value.status == 403
