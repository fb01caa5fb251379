"""Launch latency: 10 launches through the JSON API of a real portal (web + worker
subprocesses). Prints p50/p95 of request → ready, of each step, of what the app and its checks
take, and of the portal's own overhead (the difference).

    .venv/bin/python benchmarks/launch_latency.py [--launches 10] [--runtime local|kubernetes]

local (the default): the sqlite pool; the app's own time is the rollout step (process spawn →
first 2xx from its health path).
kubernetes: a real node started for the run (scripts/k8s-cluster start --real, its portal.env:
the mysql pool on the node's MariaDB, the images in its registry; stopped at the end), each
branch's demo image pushed first as CI would. The app's own time is the rollout step (image
pull, container start, readiness) plus the smoke step (the smoke Job's pod and its checks).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.kube import RealNode  # noqa: E402
from tests.support.live import Portal, running_portal  # noqa: E402

BRANCHES = ["main", "feature/checkout", "feature/ünïcode-✨"]
SETTLED = {"ready", "degraded", "failed"}


def call(portal: Portal, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        portal.url + "/api/v1" + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def wait_for(portal: Portal, token: str, env_id: int, statuses: set[str]) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        environment = call(portal, token, "GET", f"/environments/{env_id}")
        if environment["status"] in statuses:
            return environment
        time.sleep(0.02)
    raise TimeoutError(f"environment {env_id} never reached {statuses}")


def seconds(step: dict) -> float:
    start = datetime.fromisoformat(step["started_at"])
    return (datetime.fromisoformat(step["finished_at"]) - start).total_seconds()


def one_launch(portal: Portal, token: str, branch: str) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    environment = call(portal, token, "POST", "/environments",
                       {"project": "demo", "branch": branch})
    environment = wait_for(portal, token, environment["id"], SETTLED)
    total = time.monotonic() - started
    if environment["status"] != "ready":
        raise RuntimeError(f"{branch}: {environment['status']} {environment['status_detail']}")
    while environment["runs"][0]["status"] == "running":  # notify follows "ready"
        time.sleep(0.05)
        environment = call(portal, token, "GET", f"/environments/{environment['id']}")
    steps = {step["name"]: seconds(step) for step in environment["runs"][0]["steps"]}
    call(portal, token, "DELETE", f"/environments/{environment['id']}")
    wait_for(portal, token, environment["id"], {"torn_down"})
    return total, steps


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# What the app and its checks take, per runtime: the rest is the portal's own.
APP_STEPS = {"local": ("rollout",), "kubernetes": ("rollout", "smoke")}


@contextmanager
def portal_on(runtime: str, tmp: Path) -> Iterator[Portal]:
    if runtime == "local":
        with running_portal(tmp / "var") as portal:
            yield portal
        return
    node = RealNode(tmp / "node")
    node.start()
    try:
        # No ALB on the node: none of its annotations.
        with running_portal(tmp / "var", **node.env(), PORTAL_RUNTIME="kubernetes",
                            PORTAL_INGRESS_ANNOTATIONS="{}") as portal:
            for branch in BRANCHES:
                node.push_branch(str(tmp / "var" / "demo-repo"), branch, tmp / "images")
            yield portal
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=10)
    parser.add_argument("--runtime", choices=sorted(APP_STEPS), default="local")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, portal_on(args.runtime, Path(tmp)) as portal:
        token = portal.manage("create_api_token", "admin").strip().splitlines()[-1]
        results = [one_launch(portal, token, BRANCHES[i % len(BRANCHES)])
                   for i in range(args.launches)]
    totals = [t for t, _ in results]
    app = [sum(steps[name] for name in APP_STEPS[args.runtime]) for _, steps in results]
    rows = [("request -> ready", totals), (f"app ({' + '.join(APP_STEPS[args.runtime])})", app),
            ("portal overhead", [t - s for t, s in zip(totals, app, strict=True)]),
            # The queue, the worker taking the run, the branch resolved: no step counts them.
            ("outside the steps", [t - sum(steps.values()) for t, steps in results])]
    rows += [(f"step {name}", [steps[name] for _, steps in results]) for name in results[0][1]]
    pool = "sqlite" if args.runtime == "local" else "mysql"
    print(f"launches: {len(results)} ({args.runtime} runtime, {pool} pool, 2 components each)")
    for name, values in rows:
        print(f"{name:>20}: p50 {percentile(values, 0.5):.3f}s  p95 {percentile(values, 0.95):.3f}s"
              f"  mean {statistics.mean(values):.3f}s")


if __name__ == "__main__":
    main()
