"""The smoke Job of the kubernetes runtime as a pure manifest: what it may hold and carry."""

import pytest

from environments.backends import BackendError
from environments.backends.runtime import SuiteRun
from environments.backends.runtime.manifests import CONFIGMAP_MAX_BYTES, smoke_job


def suite(**files: bytes) -> SuiteRun:
    return SuiteRun(env_key="k" * 32, name="smoke-1-1", files=files, python_args=("attempt.py",),
                    environ={"PREVIEW_BRANCH": "main"}, timeout=100, image="portal:1")


def test_a_suite_over_the_configmap_limit_is_refused_saying_how_big_it_is() -> None:
    with pytest.raises(BackendError, match=r"the smoke suite is \d+ KiB; Kubernetes keeps at most"):
        smoke_job(suite(**{"big.py": b"#" * CONFIGMAP_MAX_BYTES}), "previews")


def test_a_binary_test_file_is_refused() -> None:
    with pytest.raises(BackendError, match="not text"):
        smoke_job(suite(**{"blob.py": b"\xff\xfe"}), "previews")


def test_the_job_runs_the_attempt_from_the_configmap_unprivileged_and_once() -> None:
    config_map, job = smoke_job(suite(**{"attempt.py": b"print()"}), "previews")
    assert config_map["data"] == {"f0": "print()"}
    pod = job["spec"]["template"]["spec"]
    assert job["spec"]["backoffLimit"] == 0
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    container = pod["containers"][0]
    assert container["command"] == ["python", "attempt.py"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "PREVIEW_BRANCH", "value": "main"} in container["env"]
