"""A real Kubernetes API server for the tests: etcd, the control plane and kwok's simulated node,
started and stopped by scripts/k8s-cluster (`make test` builds or reuses its binaries)."""

import subprocess
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "k8s-cluster"
START_TIMEOUT = 180
# The smoke Jobs' image on the test cluster (kwok runs no container: any name does).
SMOKE_IMAGE = "ghcr.io/preview-portal/portal:test"


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

    def _script(self, command: str) -> None:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), command, str(self.directory)], capture_output=True,
            text=True, check=False, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL,
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


def delete_namespace(api: DynamicClient, name: str) -> None:
    with suppress(NotFoundError):
        resource(api, "Namespace").delete(name=name)
