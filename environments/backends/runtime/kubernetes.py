"""Kubernetes runtime: the environment's objects (manifests.py) server-side applied by field
manager `preview-portal`, in one shared namespace or one namespace per environment.

Everything is found again by its labels, never by memory: a half-applied run is finished by the
next one, torn down by teardown, or removed by `manage.py reconcile`. The kubernetes SDK is
imported only here.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from environments import naming
from environments.backends import BackendError
from environments.backends.runtime import Log, Runtime, SuiteRun, Target, manifests
from environments.backends.runtime.manifests import KINDS, Manifest, Placement

T = TypeVar("T")
FIELD_MANAGER = "preview-portal"
MANAGED = "app.kubernetes.io/managed-by=preview-portal"
# What a Deployment leaves until the garbage collector is done: waited for, never deleted.
DEPENDANTS = {"ReplicaSet": "apps/v1", "Pod": "v1"}
REQUEST_TIMEOUT = (5, 30)  # connect, read: no call may hang a worker
ATTEMPTS = 4  # at a 5xx, 429 or no answer; backoff 0.5, 1, 2 s between them
BACKOFF = 0.5
POLL = 0.5  # each poll lists the pods and Warning events of the namespace
DELETE_TIMEOUT = 120.0
GRANT_TIMEOUT = 10.0
# Most of a pod's log read for a page: its last lines can each be megabytes long.
LOG_BYTES = 64 * 1024
# Waiting reasons that are only a container on its way up, not a problem.
STARTING = {"ContainerCreating", "PodInitializing"}
CRASH_LOOP = "CrashLoopBackOff"
CRASH_RESTARTS = 2  # restarts before a crash loop fails the rollout at once
SUITE_LOG_BYTES = 16 * 1024 * 1024  # of a smoke Job's log: its report comes back in it
SUITE_WAIT_GRACE = 30.0  # beyond the Job's own deadline, for the Job controller to say so


def _api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        if settings.PORTAL_KUBECONFIG or settings.PORTAL_KUBE_CONTEXT:
            config.load_kube_config(
                config_file=settings.PORTAL_KUBECONFIG or None,
                context=settings.PORTAL_KUBE_CONTEXT or None,
                client_configuration=configuration, persist_config=False,
            )
            _keep_credential_files(configuration)
        else:
            config.load_incluster_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        raise ImproperlyConfigured(
            f"PORTAL_KUBECONFIG / PORTAL_KUBE_CONTEXT (both empty: in-cluster): {exc}"
        ) from exc
    return client.ApiClient(configuration)


def _keep_credential_files(configuration: client.Configuration) -> None:
    """Point the client at copies of its certificate files that stay.

    The kubeconfig loader writes inline certificates (certificate-authority-data, ...) to temp
    files that it deletes when the process exits, and `manage.py qcluster`'s first process
    exits while the workers it forked go on using them: every API call would then fail.
    """
    directory = Path(settings.VAR_DIR) / "kube"
    for attribute in ("ssl_ca_cert", "cert_file", "key_file"):
        path = getattr(configuration, attribute)
        if not path:
            continue
        content = Path(path).read_bytes()
        kept = directory / hashlib.sha256(content).hexdigest()
        if not kept.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            partial = kept.with_suffix(f".{os.getpid()}")
            partial.write_bytes(content)
            partial.chmod(0o600)  # a client key may be among them
            partial.replace(kept)
        setattr(configuration, attribute, str(kept))


def _status(exc: ApiException) -> dict[str, Any]:
    """The API server's Status object for a refused call (empty when it sent none)."""
    try:
        status = json.loads(exc.body)
    except (TypeError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def _message(exc: ApiException) -> str:
    """The API server's own explanation (its Status message), else the HTTP reason."""
    return str(_status(exc).get("message") or exc.body or exc.reason)


def _error(what: str, exc: ApiException) -> BackendError:
    status, message = exc.status or 0, _message(exc)
    if status == 422:
        return BackendError(f"{what}: refused as invalid by the API server: {message}")
    if status == 409:
        # Someone else wrote it between our read and our write: a new attempt starts afresh.
        return BackendError(f"{what}: conflict: {message}", retryable=True)
    if status in (401, 403):
        # A namespace being deleted refuses new objects until it is gone.
        return BackendError(f"{what}: not allowed: {message}",
                            retryable="being terminated" in message)
    return BackendError(f"{what}: API server answered {status}: {message}",
                        retryable=status == 429 or status >= 500)


class KubernetesRuntime(Runtime):
    def __init__(self) -> None:
        self.api = _api_client()

    # -- plumbing

    @cached_property
    def dynamic(self) -> DynamicClient:
        # Discovery asks the API server: done on first use, not when the portal starts.
        return self._call("discover the API", lambda: DynamicClient(self.api))

    def _call(self, what: str, call: Callable[[], T], missing: T | None = None) -> T:
        """One API call. What may pass (5xx, 429, no answer, a namespace still terminating) is
        tried again with backoff, a bounded number of times; 404 gives `missing` if one is set."""
        error = BackendError(what)
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(BACKOFF * 2 ** (attempt - 1))
            try:
                return call()
            except ApiException as exc:
                if exc.status == 404 and missing is not None:
                    return missing
                error = _error(what, exc)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                error = BackendError(f"{what}: the API server did not answer ({exc})",
                                     retryable=True)
            if not error.retryable:
                break
        raise error

    def _resource(self, kind: str) -> Any:
        version = {**KINDS, **DEPENDANTS, "Namespace": "v1", "Event": "v1",
                   "RoleBinding": "rbac.authorization.k8s.io/v1"}[kind]
        return self.dynamic.resources.get(api_version=version, kind=kind)

    def _get(self, kind: str, namespace: str | None, name: str) -> Manifest:
        """The object as a dict; empty when it does not exist."""
        return self._call(
            f"read {kind} {name}",
            lambda: self._resource(kind).get(name=name, namespace=namespace,
                                             _request_timeout=REQUEST_TIMEOUT).to_dict(),
            missing={},
        )

    def _list(self, kind: str, namespace: str | None, selector: str = "",
              fields: str = "") -> list[Manifest]:
        where = f" in {namespace}" if namespace else ""
        answer = self._call(
            f"list {kind}{where}",
            lambda: self._resource(kind).get(
                namespace=namespace, label_selector=selector or None,
                field_selector=fields or None, _request_timeout=REQUEST_TIMEOUT,
            ).to_dict(),
        )
        return list(answer.get("items") or [])

    # -- where things go

    def placement(self, env_key: str) -> Placement:
        own = settings.PORTAL_K8S_NAMESPACE_MODE == "per-environment"
        shared = settings.PORTAL_K8S_NAMESPACE
        return Placement(
            namespace=naming.object_name(shared, env_key) if own else shared, own_namespace=own,
            ingress_class=settings.PORTAL_INGRESS_CLASS,
            ingress_annotations=dict(settings.PORTAL_INGRESS_ANNOTATIONS),
        )

    def _placement_to_apply(self, env_key: str) -> Placement:
        """The placement, with who the portal is when it must grant itself rights there."""
        placement = self.placement(env_key)
        return replace(placement, runtime_user=self.identity) if placement.own_namespace \
            else placement

    @cached_property
    def identity(self) -> str:
        """The user (or ServiceAccount) the API server knows the portal as."""
        review = self._call(
            "ask the API server who the portal is",
            lambda: client.AuthenticationV1Api(self.api).create_self_subject_review(
                client.V1SelfSubjectReview(), _request_timeout=REQUEST_TIMEOUT),
        )
        return str(review.status.user_info.username)

    @staticmethod
    def selector(env_key: str, component: str | None = None) -> str:
        return ",".join(f"{k}={v}" for k, v in naming.labels(env_key, component).items())

    # -- the Runtime interface

    def render(self, target: Target) -> str:
        placement = self._placement_to_apply(target.env_key)
        mode = "its own namespace" if placement.own_namespace else "shared namespace"
        header = (f"# kubernetes runtime: {mode} {placement.namespace}; server-side applied by "
                  f"{FIELD_MANAGER}; Secret and component env values redacted\n")
        hidden = {name for spec in target.components for name in spec.env}
        return header + manifests.render(manifests.build(target, placement), hidden)

    def apply(self, target: Target, log: Log) -> None:
        placement = self._placement_to_apply(target.env_key)
        objects = manifests.build(target, placement)
        if not placement.own_namespace:
            self._ensure_namespace(placement.namespace, log)
        for manifest in objects:
            if manifest["kind"] != "RoleBinding":
                self._apply_one(manifest, log)
            elif self._create_once(manifest, log):
                self._wait_for_rights(placement.namespace)

    def wait_ready(self, target: Target, log: Log, timeout: float) -> dict[str, str]:
        placement = self.placement(target.env_key)
        deployments = [m["metadata"]["name"]
                       for m in manifests.build(target, placement) if m["kind"] == "Deployment"]
        self._wait_rollout(target.env_key, placement.namespace, deployments, log, timeout)
        return {spec.name: manifests.public_url(spec, placement)
                for spec in target.components if spec.exposed}

    def address(self, target: Target) -> str | None:
        namespace = self.placement(target.env_key).namespace
        for spec in target.components:
            if not spec.exposed:
                continue
            name = naming.object_name(spec.name, target.env_key)
            ingress = self._get("Ingress", namespace, name)
            for entry in ((ingress.get("status") or {}).get("loadBalancer") or {}).get(
                    "ingress") or []:
                if entry.get("hostname") or entry.get("ip"):
                    return str(entry.get("hostname") or entry.get("ip"))
        return None

    def suite_urls(self, env_key: str, components: list[str], urls: dict[str, str]
                   ) -> dict[str, str]:
        """Every component's Service, by the name a pod of the cluster resolves."""
        namespace = self.placement(env_key).namespace
        return {name: manifests.service_url(name, env_key, namespace) for name in components}

    def run_suite(self, suite: SuiteRun, log: Log) -> str:
        """A Job in the environment's namespace; its result is read back from the pod's log."""
        if not suite.image:
            raise BackendError("no image for the smoke Job: set PORTAL_SMOKE_IMAGE (the portal's "
                               "own image has pytest) or the project's smoke \"image\"")
        namespace = self.placement(suite.env_key).namespace
        for manifest in manifests.smoke_job(suite, namespace):
            self._create_once(manifest, log)
        deadline = suite.timeout + manifests.SMOKE_START_SECONDS + SUITE_WAIT_GRACE
        ended = self._wait_job(namespace, suite.name, deadline)
        output = self._job_output(namespace, suite.name)
        self._delete_job(namespace, suite.name, log)
        return f"{output}\n{ended}" if ended else output

    def delete(self, env_key: str, log: Log) -> None:
        placement = self.placement(env_key)
        if placement.own_namespace:
            self._delete_namespace(placement.namespace, log)
        else:
            self._delete_labelled(env_key, placement.namespace, log)

    def logs(self, env_key: str, component: str, lines: int = 200) -> str:
        namespace = self.placement(env_key).namespace
        pods = self._list("Pod", namespace, self.selector(env_key, component))
        if not pods:
            return ""
        newest = _newest(pods)
        containers = [c["name"] for c in newest["spec"]["containers"]]
        container = component if component in containers else containers[0]
        return self._pod_log(namespace, newest["metadata"]["name"], container,
                             tail_lines=lines, limit_bytes=LOG_BYTES)

    def component_states(self, env_key: str) -> dict[str, str]:
        namespace = self.placement(env_key).namespace
        by_component: dict[str, list[Manifest]] = {}
        for pod in self._list("Pod", namespace, self.selector(env_key)):
            name = pod["metadata"]["labels"].get("preview-portal/component", "?")
            by_component.setdefault(name, []).append(pod)
        return {name: self._summary(pods) for name, pods in sorted(by_component.items())}

    def inventory(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for key, line in self._labelled_objects():
            found.setdefault(key, []).append(line)
        return found

    # -- apply

    def _ensure_namespace(self, name: str, log: Log) -> None:
        if not self._get("Namespace", None, name):
            self._create_once({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                              log)

    def _create_once(self, manifest: Manifest, log: Log) -> bool:
        """Create it unless it exists (another worker, or an earlier attempt, was first).

        For what never changes once made: creating is all the portal may do with RoleBindings,
        and all it needs to do with the shared namespace.
        """
        kind, metadata = manifest["kind"], manifest["metadata"]
        namespace = metadata.get("namespace")
        where = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]

        def create() -> bool:
            try:
                self._resource(kind).create(body=manifest, namespace=namespace,
                                            _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status == 409 and _status(exc).get("reason") == "AlreadyExists":
                    return False
                raise
            return True

        created = self._call(f"create {kind} {where}", create)
        log(f"{'created' if created else 'unchanged'} {kind} {where}")
        return created

    def _wait_for_rights(self, namespace: str) -> None:
        """The API server's authorizer learns of a new RoleBinding from a cache: until it has, the
        portal's next calls in the namespace would be refused."""
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, verb="patch", group="apps", resource="deployments")))
        authorization = client.AuthorizationV1Api(self.api)
        deadline = time.monotonic() + GRANT_TIMEOUT
        while not self._call(
                f"check the portal's rights in namespace {namespace}",
                lambda: authorization.create_self_subject_access_review(
                    review, _request_timeout=REQUEST_TIMEOUT)).status.allowed:
            if time.monotonic() > deadline:
                raise BackendError(
                    f"the portal has no rights in namespace {namespace} {GRANT_TIMEOUT:.0f} s "
                    f"after binding {manifests.RUNTIME_ROLE} there: does that ClusterRole exist "
                    "(deploy/per-environment)?", retryable=True)
            time.sleep(POLL / 5)

    def _apply_one(self, manifest: Manifest, log: Log) -> None:
        kind, metadata = manifest["kind"], manifest["metadata"]
        namespace = metadata.get("namespace")
        where = f"{namespace}/{metadata['name']}" if namespace else metadata["name"]
        before = self._get(kind, namespace, metadata["name"]).get("metadata", {})
        after = self._call(
            f"apply {kind} {where}",
            lambda: self._resource(kind).server_side_apply(
                body=manifest, namespace=namespace, field_manager=FIELD_MANAGER,
                # Our fields are ours: take them back from whoever changed them by hand.
                force_conflicts=True, _request_timeout=REQUEST_TIMEOUT,
            ).to_dict(),
        )["metadata"]
        if not before:
            log(f"created {kind} {where}")
        elif before.get("resourceVersion") != after.get("resourceVersion"):
            log(f"updated {kind} {where}")
        else:
            log(f"unchanged {kind} {where}")

    # -- smoke Jobs

    def _wait_job(self, namespace: str, name: str, timeout: float) -> str:
        """"" once the Job succeeded, else why it did not (failed, or never ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._get("Job", namespace, name).get("status") or {}
            for condition in status.get("conditions") or []:
                if condition.get("status") != "True":
                    continue
                if condition.get("type") == "Complete":
                    return ""
                if condition.get("type") == "Failed":
                    return (f"the smoke Job {name} failed ({condition.get('reason')}: "
                            f"{condition.get('message') or ''}) "
                            + "; ".join(self._job_problems(namespace, name))).rstrip()
            time.sleep(POLL)
        problems = "; ".join(self._job_problems(namespace, name))
        return f"the smoke Job {name} did not end in {timeout:.0f} s {problems}".rstrip()

    def _job_pods(self, namespace: str, name: str) -> list[Manifest]:
        return self._list("Pod", namespace, f"batch.kubernetes.io/job-name={name}")

    def _job_problems(self, namespace: str, name: str) -> list[str]:
        return [reason for pod in self._job_pods(namespace, name) for reason in _pod_problems(pod)]

    def _job_output(self, namespace: str, name: str) -> str:
        pods = self._job_pods(namespace, name)
        if not pods:
            return ""
        try:
            return self._pod_log(namespace, _newest(pods)["metadata"]["name"], "smoke",
                                 limit_bytes=SUITE_LOG_BYTES)
        except BackendError as exc:
            return str(exc)  # what the attempt then reports, as it printed nothing readable

    def _delete_job(self, namespace: str, name: str, log: Log) -> None:
        for kind in ("Job", "ConfigMap"):
            self._call(f"delete {kind} {namespace}/{name}", lambda k=kind: self._resource(k).delete(
                name=name, namespace=namespace, propagation_policy="Background",
                _request_timeout=REQUEST_TIMEOUT), missing={})
        log(f"deleted the smoke Job {namespace}/{name} and its ConfigMap")

    # -- rollout

    def _wait_rollout(self, env_key: str, namespace: str, names: list[str], log: Log,
                      timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending, seen = set(names), set()
        while True:
            for name in sorted(pending):
                progress = self._rollout_progress(self._get("Deployment", namespace, name))
                if progress is None:
                    pending.discard(name)
                    log(f"{name}: rolled out")
                elif progress == "ProgressDeadlineExceeded":
                    raise BackendError(f"{name}: Kubernetes gave up on the rollout "
                                       f"(progress deadline exceeded): "
                                       + self._diagnosis(env_key, namespace))
            if not pending:
                return
            for problem in self._problems(env_key, namespace):
                if problem not in seen:  # live in the run log, each reason once
                    seen.add(problem)
                    log(problem)
            crashing = self._crash_loop(env_key, namespace)
            if crashing:
                raise BackendError(
                    f"{', '.join(sorted(pending))} not rolled out: a container crashes at "
                    f"start ({CRASH_LOOP}): " + self._diagnosis(env_key, namespace)
                    + f"; last lines of {crashing[1]} in pod {crashing[0]}:\n"
                    + self._last_lines(namespace, *crashing))
            if time.monotonic() > deadline:
                raise BackendError(
                    f"{', '.join(sorted(pending))} not rolled out after {timeout:.0f} s: "
                    + self._diagnosis(env_key, namespace),
                    retryable=True,
                )
            time.sleep(POLL)

    def _crash_loop(self, env_key: str, namespace: str) -> tuple[str, str] | None:
        """(pod, container) of one that keeps exiting at start: waiting longer only shows it
        exit again. Kubernetes restarts a container that exits once (its dependencies may come
        up late), so the first restarts are given their chance."""
        for pod in self._list("Pod", namespace, self.selector(env_key)):
            for container in (pod.get("status") or {}).get("containerStatuses") or []:
                waiting = (container.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") == CRASH_LOOP and \
                        (container.get("restartCount") or 0) >= CRASH_RESTARTS:
                    return pod["metadata"]["name"], str(container.get("name"))
        return None

    def _last_lines(self, namespace: str, pod: str, container: str) -> str:
        """What the crashed container said last (its previous run's log)."""
        try:
            return self._pod_log(namespace, pod, container, previous=True, tail_lines=20,
                                 limit_bytes=LOG_BYTES)
        except BackendError as exc:
            return f"(its log could not be read: {exc})"

    def _pod_log(self, namespace: str, pod: str, container: str, *, limit_bytes: int,
                 tail_lines: int | None = None, previous: bool = False) -> str:
        """One container's log: at most its last `tail_lines` lines and `limit_bytes` bytes."""
        query: list[tuple[str, object]] = [("container", container), ("limitBytes", limit_bytes),
                                           ("previous", previous)]
        query += [("tailLines", tail_lines)] if tail_lines else []

        # Not CoreV1Api.read_namespaced_pod_log: importing its module builds a model of every
        # core type, ~1.5 s of CPU in each worker process that read a log.
        def read() -> str:
            request = self.api.param_serialize(
                "GET", "/api/v1/namespaces/{namespace}/pods/{name}/log",
                path_params={"namespace": namespace, "name": pod}, query_params=query,
                header_params={"Accept": "*/*"}, auth_settings=["BearerToken"])
            response = self.api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            response.read()
            # Raises ApiException, with the server's message, for anything but 2xx.
            answer = self.api.response_deserialize(response, {"2XX": "bytes", "default": "str"})
            return bytes(answer.data).decode("utf-8", "replace")

        return self._call(f"read the log of pod {pod}", read)

    @staticmethod
    def _rollout_progress(deployment: Manifest) -> str | None:
        """None once rolled out (as `kubectl rollout status` judges), else what is pending."""
        if not deployment:
            return "not created yet"
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        wanted = spec.get("replicas", 1)
        for condition in status.get("conditions") or []:
            if condition.get("reason") == "ProgressDeadlineExceeded":
                return "ProgressDeadlineExceeded"
        if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
            return "the controller has not seen the new spec yet"
        updated = status.get("updatedReplicas") or 0
        if updated < wanted:
            return f"{updated}/{wanted} replicas updated"
        if (status.get("replicas") or 0) > updated:
            return "old replicas still terminating"
        if (status.get("availableReplicas") or 0) < updated:
            return f"{status.get('availableReplicas') or 0}/{wanted} replicas available"
        return None

    def _diagnosis(self, env_key: str, namespace: str) -> str:
        problems = self._problems(env_key, namespace)
        return "; ".join(problems) if problems else "no pod reports a reason yet"

    def _problems(self, env_key: str, namespace: str) -> list[str]:
        """Why pods are not ready, from their status and their Warning events."""
        pods = self._list("Pod", namespace, self.selector(env_key))
        problems = [f"pod {pod['metadata']['name']}: {reason}"
                    for pod in pods for reason in _pod_problems(pod)]
        names = {pod["metadata"]["name"] for pod in pods}
        for event in self._list("Event", namespace, fields="type=Warning"):
            involved = event.get("involvedObject") or {}
            message = event.get("message") or ""
            said = any(message in problem for problem in problems)  # e.g. FailedScheduling
            if involved.get("kind") == "Pod" and involved.get("name") in names and not said:
                problems.append(f"pod {involved['name']}: event {event.get('reason')}: {message}")
        return problems

    @staticmethod
    def _summary(pods: list[Manifest]) -> str:
        ready = sum(1 for pod in pods if _condition(pod, "Ready") == "True")
        problems = [reason for pod in pods for reason in _pod_problems(pod)]
        state = f"{ready}/{len(pods)} pods ready"
        return f"{state}; {problems[0]}" if problems else state

    # -- delete

    def _delete_namespace(self, name: str, log: Log) -> None:
        if not self._get("Namespace", None, name):
            log(f"namespace {name} is already gone")
            return
        self._call(f"delete namespace {name}", lambda: self._resource("Namespace").delete(
            name=name, _request_timeout=REQUEST_TIMEOUT), missing={})
        log(f"deleting namespace {name} and everything in it")
        self._wait_gone(lambda: [f"namespace {name}"] if self._get("Namespace", None, name)
                        else [])
        log(f"namespace {name} is gone")

    def _delete_labelled(self, env_key: str, namespace: str, log: Log) -> None:
        selector = self.selector(env_key)
        found = [(kind, item["metadata"]["name"]) for kind in reversed(KINDS)
                 for item in self._list(kind, namespace, selector)]
        if not found:
            log(f"nothing of this environment is left in namespace {namespace}")
        for kind, name in found:
            self._call(f"delete {kind} {namespace}/{name}", lambda k=kind, n=name: self._resource(
                k).delete(name=n, namespace=namespace, propagation_policy="Background",
                          _request_timeout=REQUEST_TIMEOUT), missing={})
            log(f"deleted {kind} {namespace}/{name}")
        self._wait_gone(lambda: [
            f"{kind} {item['metadata']['name']}" for kind in (*KINDS, *DEPENDANTS)
            for item in self._list(kind, namespace, selector)
        ])
        if found:
            log(f"all objects of this environment are gone from {namespace}")

    @staticmethod
    def _wait_gone(remaining: Callable[[], list[str]]) -> None:
        deadline = time.monotonic() + DELETE_TIMEOUT
        while left := remaining():
            if time.monotonic() > deadline:
                raise BackendError(f"still there after {DELETE_TIMEOUT:.0f} s: {', '.join(left)}",
                                   retryable=True)
            time.sleep(POLL)

    def _labelled_objects(self) -> Iterator[tuple[str, str]]:
        """(env key, description) of everything labelled ours where this portal puts it."""
        key_label = "preview-portal/environment"
        if settings.PORTAL_K8S_NAMESPACE_MODE == "per-environment":
            for item in self._list("Namespace", None, MANAGED):
                yield item["metadata"]["labels"].get(key_label, ""), \
                    f"Namespace {item['metadata']['name']}"
            return
        namespace = settings.PORTAL_K8S_NAMESPACE
        for kind in KINDS:
            for item in self._list(kind, namespace, MANAGED):
                yield item["metadata"]["labels"].get(key_label, ""), \
                    f"{kind} {namespace}/{item['metadata']['name']}"


def _newest(pods: list[Manifest]) -> Manifest:
    return max(pods, key=lambda pod: pod["metadata"]["creationTimestamp"])


def _condition(pod: Manifest, kind: str) -> str | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def _pod_problems(pod: Manifest) -> list[str]:
    """Reasons a pod is not ready, in Kubernetes' own words (Unschedulable, CrashLoopBackOff...)."""
    status = pod.get("status") or {}
    problems = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            problems.append(f"{condition.get('reason') or 'not scheduled'}: "
                            f"{condition.get('message') or ''}".rstrip(": "))
    statuses = status.get("containerStatuses") or []
    for container in statuses:
        state, name = container.get("state") or {}, container.get("name")
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting and waiting.get("reason") not in STARTING:
            problems.append(f"container {name} {waiting.get('reason')}: "
                            f"{waiting.get('message') or ''}".rstrip(": "))
        elif terminated:
            problems.append(f"container {name} exited with {terminated.get('exitCode')} "
                            f"({terminated.get('reason')})")
        elif state.get("running") and not container.get("ready"):
            problems.append(f"container {name} runs but is not ready (readiness probe failing)")
    return problems
