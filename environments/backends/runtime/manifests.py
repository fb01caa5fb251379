"""The Kubernetes objects of one environment, made the way the seed's kustomize overlay made them.

A default base per component (Deployment, Service, and an Ingress when exposed), overridden by
the project's own base manifests where kind and name match, then one overlay for all of them:
name suffix, labels, namespace, image, env, DB Secret and hosts. Pure functions, no API calls:
the kubernetes runtime applies what `build` returns and shows what `render` returns.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import yaml

from environments import naming
from environments.backends import BackendError
from environments.backends.runtime import (
    ComponentSpec,
    SuiteRun,
    Target,
    public_url_variable,
    url_variable,
)

Manifest = dict[str, Any]

# kind -> apiVersion of everything an environment may hold. Teardown and the reconciler sweep
# exactly these kinds, so a project's base manifests may use only these: nothing is left behind.
# In apply order: what others refer to comes first.
KINDS: dict[str, str] = {
    "Secret": "v1",
    "ConfigMap": "v1",
    "ServiceAccount": "v1",
    "PersistentVolumeClaim": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Ingress": "networking.k8s.io/v1",
    "Job": "batch/v1",  # smoke attempts (a project's base may not hold one: see project_base)
}
# What a project's base manifests may hold: smoke Jobs are the portal's own.
BASE_KINDS = {kind: version for kind, version in KINDS.items() if kind != "Job"}
DB_SECRET = "db"  # base name of the Secret that holds the slot's DB values
REDACTED = "<redacted>"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DEFAULT_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
SERVICE_PORT = 80
SMOKE_COMPONENT = "smoke"  # the component label of smoke Jobs (teardown sweeps them by label)
SMOKE_RESOURCES = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
SUITE_MOUNT = "/suite"
SMOKE_START_SECONDS = 60  # for the image pull and container start, beyond the suite's own time
SMOKE_TTL_SECONDS = 3600  # a Job the portal could not delete (it died) goes by itself
CONFIGMAP_MAX_BYTES = 1024 * 1024 - 16 * 1024  # the API's 1 MiB, less room for the metadata
# Object metadata the API server sets; a copy of them describes some other object.
SERVER_SET = frozenset({"uid", "resourceVersion", "generation", "creationTimestamp",
                        "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields",
                        "selfLink", "ownerReferences"})
# The ClusterRole of deploy/per-environment that the portal binds to itself in each namespace
# it creates: outside its own namespaces it may do nothing but manage namespaces.
RUNTIME_ROLE = "preview-portal-runtime"


@dataclass(frozen=True)
class Placement:
    """Where and how the environment's objects go (from the portal's settings)."""

    namespace: str
    own_namespace: bool
    ingress_class: str
    ingress_annotations: dict[str, str] = field(default_factory=dict)
    # Who the portal is to the API server: given the runtime's rights in its own namespaces.
    runtime_user: str = ""


def build(target: Target, placement: Placement) -> list[Manifest]:
    """Every object to apply, in apply order (the namespace first when it is the env's own)."""
    # The project's base replaces a default of the same kind and name; the DB Secret is always ours.
    layers = [*default_base(target), *project_base(target.base_manifests), db_secret(target)]
    bases = {(m["kind"], m["metadata"]["name"]): m for m in layers}
    overlay = _Overlay(target, placement, bases.values())
    objects = sorted((overlay.apply(m) for m in bases.values()),
                     key=lambda m: list(KINDS).index(m["kind"]))
    if placement.own_namespace:
        objects[:0] = [namespace(placement.namespace, target.env_key),
                       *access(placement, target.env_key)]
    return objects


def render(objects: list[Manifest], hidden_env: Collection[str]) -> str:
    """YAML of what is applied, as every viewer of the page may see it: Secret values, the
    values of the `hidden_env` variables (components' env vars, which the API hides too) and
    kubectl's last-applied copies redacted."""
    shown = [redacted(m, frozenset(hidden_env)) for m in objects]
    return yaml.safe_dump_all(shown, sort_keys=False, allow_unicode=True)


def redacted(manifest: Manifest, hidden_env: frozenset[str]) -> Manifest:
    shown = copy.deepcopy(manifest)
    annotations = shown.get("metadata", {}).get("annotations") or {}
    # A base pasted from `kubectl get -o yaml` carries the whole object again, a Secret's
    # values in clear included.
    if LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = REDACTED
    if shown["kind"] == "Secret":
        for key in ("data", "stringData"):
            if key in shown:
                shown[key] = dict.fromkeys(shown[key], REDACTED)
    if shown["kind"] == "Deployment":
        pod = shown.get("spec", {}).get("template", {}).get("spec") or {}
        for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            for var in container.get("env") or []:
                if var.get("name") in hidden_env and "value" in var:
                    var["value"] = REDACTED
    return shown


def service_url(component: str, env_key: str, namespace: str) -> str:
    """A component's Service, by the name any pod of the cluster resolves."""
    port = "" if SERVICE_PORT == 80 else f":{SERVICE_PORT}"
    return f"http://{naming.object_name(component, env_key)}.{namespace}.svc{port}/"


def public_url(spec: ComponentSpec, placement: Placement) -> str:
    ports = placement.ingress_annotations.get("alb.ingress.kubernetes.io/listen-ports", "")
    return f"{'https' if 'HTTPS' in ports else 'http'}://{spec.host}/"


def smoke_job(suite: SuiteRun, namespace: str) -> list[Manifest]:
    """One smoke attempt: its files as a ConfigMap and the Job that runs them. Branch code runs
    in it, so it holds nothing of the portal's: no service-account token, no Service variables,
    no secret but the environment's own DB URL; bounded in time and resources, never retried by
    Kubernetes (the portal does the retries)."""
    size = sum(len(name) + len(content) for name, content in suite.files.items())
    if size > CONFIGMAP_MAX_BYTES:
        raise BackendError(f"the smoke suite is {size / 1024:.0f} KiB; Kubernetes keeps at most "
                           f"{CONFIGMAP_MAX_BYTES // 1024} KiB in the ConfigMap that carries it "
                           "to its Job: make the project's smoke tests smaller")
    try:
        data = {f"f{index}": content.decode() for index, content in enumerate(suite.files.values())}
    except UnicodeDecodeError as exc:
        raise BackendError("the smoke suite holds a file that is not text (UTF-8)") from exc
    labels = naming.labels(suite.env_key, SMOKE_COMPONENT)
    metadata = {"name": suite.name, "namespace": namespace, "labels": labels}
    config_map = {"apiVersion": KINDS["ConfigMap"], "kind": "ConfigMap", "metadata": metadata,
                  "data": data}
    items = [{"key": f"f{index}", "path": name} for index, name in enumerate(suite.files)]
    container = {
        "name": "smoke", "image": suite.image, "command": ["python", *suite.python_args],
        "workingDir": SUITE_MOUNT,
        "env": [{"name": k, "value": v}
                for k, v in sorted(({"HOME": "/tmp", "TMPDIR": "/tmp"} | suite.environ).items())],
        "resources": SMOKE_RESOURCES,
        "volumeMounts": [{"name": "suite", "mountPath": SUITE_MOUNT, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "restartPolicy": "Never", "automountServiceAccountToken": False,
        "enableServiceLinks": False, "containers": [container],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "suite", "configMap": {"name": suite.name, "items": items}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    job = {
        "apiVersion": KINDS["Job"], "kind": "Job", "metadata": metadata,
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": suite.timeout + SMOKE_START_SECONDS,
                 "ttlSecondsAfterFinished": SMOKE_TTL_SECONDS,
                 "template": {"metadata": {"labels": labels}, "spec": pod}},
    }
    return [config_map, job]


def namespace(name: str, env_key: str) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": naming.labels(env_key)}}


def access(placement: Placement, env_key: str) -> list[Manifest]:
    """The RoleBinding that gives the portal the runtime's rights in its new namespace."""
    if not placement.runtime_user:
        return []
    return [{
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": RUNTIME_ROLE, "namespace": placement.namespace,
                     "labels": naming.labels(env_key)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": RUNTIME_ROLE},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": placement.runtime_user}],
    }]


def default_base(target: Target) -> list[Manifest]:
    return [manifest for spec in target.components for manifest in _component_base(spec)]


def _component_base(spec: ComponentSpec) -> list[Manifest]:
    container = {
        "name": spec.name, "image": spec.image,
        "ports": [{"name": "http", "containerPort": spec.port}],
        "readinessProbe": _probe(spec), "resources": DEFAULT_RESOURCES,
    }
    deployment = {
        "apiVersion": KINDS["Deployment"], "kind": "Deployment", "metadata": {"name": spec.name},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [container]}}},
    }
    service = {
        "apiVersion": KINDS["Service"], "kind": "Service", "metadata": {"name": spec.name},
        "spec": {"ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": spec.port}]},
    }
    if not spec.exposed:
        return [deployment, service]
    backend = {"service": {"name": spec.name, "port": {"number": SERVICE_PORT}}}
    ingress = {
        "apiVersion": KINDS["Ingress"], "kind": "Ingress", "metadata": {"name": spec.name},
        "spec": {"rules": [{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend}
        ]}}]},
    }
    return [deployment, service, ingress]


def _probe(spec: ComponentSpec) -> dict[str, Any]:
    check: dict[str, Any] = (
        {"httpGet": {"path": spec.health_paths[0], "port": spec.port}} if spec.health_paths
        else {"tcpSocket": {"port": spec.port}}
    )
    return {**check, "periodSeconds": 5, "failureThreshold": 3}


def db_secret(target: Target) -> Manifest:
    data = {key: base64.b64encode(value.encode()).decode()
            for key, value in sorted(target.secret_env.items())}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": DB_SECRET},
            "type": "Opaque", "data": data}


def project_base(text: str) -> list[Manifest]:
    """The project's base manifests, checked: only kinds teardown sweeps, each with a name."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None] if text.strip() else []
    except yaml.YAMLError as exc:
        raise BackendError(f"base manifests are not valid YAML: {exc}") from exc
    for document in documents:
        if not isinstance(document, dict):
            raise BackendError(f"base manifests: each document must be a mapping, not {document!r}")
        kind, version = document.get("kind"), document.get("apiVersion")
        if BASE_KINDS.get(kind) != version:
            allowed = ", ".join(f"{k} ({v})" for k, v in BASE_KINDS.items())
            raise BackendError(f"base manifests: {version}/{kind} is not a kind the portal "
                               f"manages and tears down; use one of: {allowed}")
        name = (document.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not name:
            raise BackendError(f"base manifests: a {kind} has no metadata.name")
    return [_as_written(document) for document in documents]


def _as_written(document: Manifest) -> Manifest:
    """Without what the API server fills in, so `kubectl get -o yaml` output can be pasted: an
    applied uid or resourceVersion would be a precondition the new object never meets (409)."""
    written = {key: value for key, value in document.items() if key != "status"}
    written["metadata"] = {key: value for key, value in document["metadata"].items()
                           if key not in SERVER_SET}
    return written


class _Overlay:
    """What kustomize's overlay did: suffix names (and references to them), labels, namespace,
    image and env per component, hosts on Ingress rules."""

    def __init__(self, target: Target, placement: Placement, bases: Any) -> None:
        self.target = target
        self.placement = placement
        self.components = {spec.name: spec for spec in target.components}
        self.names: dict[str, set[str]] = {}
        for base in bases:
            self.names.setdefault(base["kind"], set()).add(base["metadata"]["name"])

    def apply(self, base: Manifest) -> Manifest:
        manifest = copy.deepcopy(base)
        metadata = manifest.setdefault("metadata", {})
        base_name = metadata["name"]
        component = self.components.get(base_name)
        metadata["name"] = self.suffixed(base_name)
        metadata["namespace"] = self.placement.namespace
        own = naming.labels(self.target.env_key, component.name if component else None)
        metadata["labels"] = {**(metadata.get("labels") or {}), **own}
        kind = manifest["kind"]
        if kind == "Deployment":
            self.deployment(base_name, manifest.setdefault("spec", {}), component)
        elif kind == "Service":
            spec = manifest.setdefault("spec", {})
            # In a shared namespace a selector without the environment picks every preview's pods.
            spec["selector"] = {**(spec.get("selector") or {}), **own}
        elif kind == "Ingress":
            self.ingress(metadata, manifest.setdefault("spec", {}))
        return manifest

    def suffixed(self, name: str) -> str:
        return naming.object_name(name, self.target.env_key)

    def rename(self, holder: dict[str, Any] | None, key: str, kind: str) -> None:
        """Point a reference at the suffixed object when it names one of this environment's."""
        if holder and holder.get(key) in self.names.get(kind, ()):
            holder[key] = self.suffixed(holder[key])

    def deployment(self, name: str, spec: Manifest, component: ComponentSpec | None) -> None:
        if component is None:
            raise BackendError(
                f"base manifests: Deployment {name!r} is named after no component "
                f"({', '.join(self.components)}); its image and env come from that component"
            )
        labels = naming.labels(self.target.env_key, component.name)
        # Derived from the env key and component alone, so a redeploy never changes it.
        spec["selector"] = {"matchLabels": labels}
        template = spec.setdefault("template", {})
        template_metadata = template.setdefault("metadata", {})
        template_metadata["labels"] = {**(template_metadata.get("labels") or {}), **labels}
        pod = template.setdefault("spec", {})
        self.pod_references(pod)
        containers = pod.get("containers") or []
        main = next((c for c in containers if c.get("name") == component.name), None)
        main = main or (containers[0] if containers else None)
        if main is None:
            raise BackendError(f"base manifests: Deployment {component.name!r} has no container")
        self.container(main, component)

    def container(self, container: Manifest, component: ComponentSpec) -> None:
        if component.image:
            container["image"] = component.image
        if not container.get("image"):
            raise BackendError(f"component {component.name} has no image: set its image template "
                               "(e.g. registry/name:{commit})")
        ours = {**self.target.env, **self.peers(), **component.env, "PORT": str(component.port)}
        kept = [var for var in container.get("env") or [] if var.get("name") not in ours]
        container["env"] = kept + [{"name": k, "value": v} for k, v in sorted(ours.items())]
        secret = {"secretRef": {"name": self.suffixed(DB_SECRET)}}
        sources = container.get("envFrom") or []
        container["envFrom"] = sources + ([secret] if secret not in sources else [])

    def peers(self) -> dict[str, str]:
        """Where each component finds the others, as the local runtime tells its processes:
        PREVIEW_URL_* inside the cluster (their Services), PREVIEW_PUBLIC_URL_* from outside."""
        key, namespace = self.target.env_key, self.placement.namespace
        inside = {url_variable(spec.name): service_url(spec.name, key, namespace)
                  for spec in self.target.components}
        outside = {public_url_variable(spec.name): public_url(spec, self.placement)
                   for spec in self.target.components if spec.exposed}
        return inside | outside

    def pod_references(self, pod: Manifest) -> None:
        for container in [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]:
            for source in container.get("envFrom") or []:
                self.rename(source.get("configMapRef"), "name", "ConfigMap")
                self.rename(source.get("secretRef"), "name", "Secret")
            for var in container.get("env") or []:
                value_from = var.get("valueFrom") or {}
                self.rename(value_from.get("configMapKeyRef"), "name", "ConfigMap")
                self.rename(value_from.get("secretKeyRef"), "name", "Secret")
        for volume in pod.get("volumes") or []:
            self.rename(volume.get("configMap"), "name", "ConfigMap")
            self.rename(volume.get("secret"), "secretName", "Secret")
            self.rename(volume.get("persistentVolumeClaim"), "claimName", "PersistentVolumeClaim")
        self.rename(pod, "serviceAccountName", "ServiceAccount")

    def ingress(self, metadata: Manifest, spec: Manifest) -> None:
        spec["ingressClassName"] = self.placement.ingress_class
        # The portal's annotations win: they put every preview behind one shared ALB.
        metadata["annotations"] = {**(metadata.get("annotations") or {}),
                                   **self.placement.ingress_annotations}
        self.rename((spec.get("defaultBackend") or {}).get("service"), "name", "Service")
        for rule in spec.get("rules") or []:
            services = [(p.get("backend") or {}).get("service") or {}
                        for p in (rule.get("http") or {}).get("paths") or []]
            served = next((self.components[s["name"]] for s in services
                           if s.get("name") in self.components), None)
            if served is not None:
                rule["host"] = served.host
            for service in services:
                self.rename(service, "name", "Service")
        for tls in spec.get("tls") or []:
            self.rename(tls, "secretName", "Secret")
