"""A real Kubernetes API server for the tests: etcd, the control plane and kwok's simulated node,
started and stopped by scripts/k8s-cluster (`make test` builds or reuses its binaries)."""

import importlib.machinery
import importlib.util
import os
import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from kubernetes import config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.support.tools import require_tool

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "k8s-cluster"
START_TIMEOUT = 180
# The smoke Jobs' image on the test cluster (kwok runs no container: any name does).
SMOKE_IMAGE = "ghcr.io/preview-portal/portal:test"
# Renders deploy/; built from the Go module proxy by `make kustomize`, cached outside the
# repository.
KUSTOMIZE = Path(os.environ.get(
    "KUSTOMIZE", Path.home() / ".cache/preview-portal/kustomize-v5.5.0/kustomize"))


def cluster_script() -> ModuleType:
    """scripts/k8s-cluster as a module, its settings read from the environment now."""
    loader = importlib.machinery.SourceFileLoader("k8s_cluster", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def missing() -> str:
    """What the cluster lacks on this machine ("" when it can start)."""
    result = subprocess.run([sys.executable, str(SCRIPT), "check"], capture_output=True,
                            text=True, check=False)
    return result.stderr.strip() if result.returncode else ""


@dataclass
class Cluster:
    directory: Path

    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    def _script(self, command: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), command, str(self.directory), *args],
            capture_output=True, text=True, check=False, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode:
            raise RuntimeError(f"k8s-cluster {command} failed:\n{result.stderr}")

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def client(self) -> DynamicClient:
        return DynamicClient(config.new_client_from_config(str(self.kubeconfig),
                                                           persist_config=False))


def resource(api: DynamicClient, kind: str) -> Any:
    versions = {"Deployment": "apps/v1", "ReplicaSet": "apps/v1",
                "Ingress": "networking.k8s.io/v1", "Job": "batch/v1"}
    return api.resources.get(api_version=versions.get(kind, "v1"), kind=kind)


def items(api: DynamicClient, kind: str, namespace: str | None, selector: str) -> list[dict]:
    found = resource(api, kind).get(namespace=namespace, label_selector=selector).to_dict()
    return list(found["items"])


def kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """The manifests `kustomize build DIRECTORY` renders."""
    require_tool(KUSTOMIZE.is_file(), f"kustomize at {KUSTOMIZE} (make kustomize builds it)")
    output = subprocess.run([str(KUSTOMIZE), "build", str(directory)], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def server_side_apply(api: DynamicClient, manifest: dict[str, Any], field_manager: str,
                      dry_run: bool = False) -> None:
    found = api.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    found.server_side_apply(body=manifest, namespace=manifest["metadata"].get("namespace"),
                            field_manager=field_manager, dry_run="All" if dry_run else None)


def delete_namespace(api: DynamicClient, name: str) -> None:
    with suppress(NotFoundError):
        resource(api, "Namespace").delete(name=name)


# ---------------------------------------------------------------- the real node


def missing_real_node() -> str:
    """What the real node lacks on this machine ("" when it can start)."""
    result = subprocess.run([sys.executable, str(SCRIPT), "check", "--real"], capture_output=True,
                            text=True, check=False)
    return result.stderr.strip() if result.returncode else ""


@dataclass
class RealNode(Cluster):
    """One real node (containerd, kubelet, kube-proxy, CoreDNS) with its image registry and
    the DB pool's MariaDB: `scripts/k8s-cluster start --real`."""

    def start(self) -> None:
        self._script("start", "--real")

    def env(self) -> dict[str, str]:
        """DIR/portal.env: what the portal needs to use this node."""
        lines = (self.directory / "portal.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def push_demo(self, checkout: Path, tag: str) -> str:
        """The demo's image of `checkout`, built with its Dockerfile, as the node pulls it."""
        self._script("push-demo", str(checkout), tag, timeout=600)
        return f"{self.env()['PORTAL_DEMO_IMAGE']}:{tag}"

    def push_branch(self, repository: str, branch: str, scratch: Path) -> str:
        """What CI does per commit: the head of `branch` built with its Dockerfile and pushed
        as demo:{commit}; the commit."""
        commit = subprocess.run(["git", "-C", repository, "rev-parse", branch], text=True,
                                capture_output=True, check=True).stdout.strip()
        checkout = scratch / commit
        checkout.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", repository, "archive", commit],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
        self.push_demo(checkout, commit)
        return commit


def use_cluster(settings: Any, kubeconfig: Path, namespace: str, mode: str = "shared",
                ready_timeout: float = 30, smoke_image: str = SMOKE_IMAGE) -> None:
    """The kubernetes runtime on the cluster of `kubeconfig`, in `namespace`."""
    settings.PORTAL_RUNTIME = "kubernetes"
    settings.PORTAL_KUBECONFIG = str(kubeconfig)
    settings.PORTAL_KUBE_CONTEXT = ""
    settings.PORTAL_K8S_NAMESPACE = namespace
    settings.PORTAL_K8S_NAMESPACE_MODE = mode
    settings.PORTAL_READY_TIMEOUT = ready_timeout
    settings.PORTAL_SMOKE_IMAGE = smoke_image
