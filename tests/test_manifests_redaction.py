"""The Manifests panel of the kubernetes runtime (manifests.render) is read by every role: it
shows what is applied, but no value the API hides (components' env vars, Secrets), not even
through kubectl's copy of a Secret pasted in a project's base manifests."""

import json

import yaml

from environments.backends.runtime import ComponentSpec, Target
from environments.backends.runtime.manifests import LAST_APPLIED, Placement, build, render

API_KEY = "sk_live_51HzQ2eZvKYlo2C"
SECRET_VALUE = "hunter2-but-longer"
PASTED_SECRET = {
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": "payments", "annotations": {LAST_APPLIED: json.dumps({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "payments"},
        "stringData": {"TOKEN": SECRET_VALUE},
    })}},
    "stringData": {"TOKEN": SECRET_VALUE},
}


def target(base_manifests: str = "") -> Target:
    web = ComponentSpec(
        name="web", image="ghcr.io/acme/web:abc", port=8080, health_paths=("/healthz",),
        start_command="", exposed=True, host="web.preview.localhost",
        env={"PAYMENTS_API_KEY": API_KEY},
    )
    return Target(
        env_key="0123456789abcdef0123456789abcdef", project="shop", repository="", branch="main",
        commit="abc", components=(web,), env={"PREVIEW_BRANCH": "main"},
        secret_env={"DB_PASSWORD": "s3cret-db-password"}, base_manifests=base_manifests,
    )


def shown(base_manifests: str = "") -> str:
    objects = build(target(base_manifests), Placement("previews", False, "alb"))
    return render(objects, {"PAYMENTS_API_KEY"})


def test_component_env_values_are_redacted_but_their_names_and_the_portals_values_shown():
    text = shown()

    assert API_KEY not in text
    deployment = next(d for d in yaml.safe_load_all(text) if d["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "PAYMENTS_API_KEY", "value": "<redacted>"} in env
    assert {"name": "PREVIEW_BRANCH", "value": "main"} in env
    assert {"name": "PORT", "value": "8080"} in env


def test_a_pasted_secrets_last_applied_copy_is_redacted_with_its_values():
    text = shown(yaml.safe_dump(PASTED_SECRET))

    assert SECRET_VALUE not in text
    secret = next(d for d in yaml.safe_load_all(text)
                  if d["kind"] == "Secret" and d["metadata"]["name"].startswith("payments"))
    assert secret["metadata"]["annotations"] == {LAST_APPLIED: "<redacted>"}
    assert secret["stringData"] == {"TOKEN": "<redacted>"}

