"""Launch latency on the local runtime: 10 launches through the JSON API of a real portal
(web + worker subprocesses). Prints p50/p95 of request → ready, of the app's own start time
(the rollout step: process spawn → first 2xx from its health path), and of the portal's own
overhead (the difference).

    .venv/bin/python benchmarks/launch_latency.py [--launches 10]
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_portal(Path(tmp) / "var") as portal:
        token = portal.manage("create_api_token", "admin").strip().splitlines()[-1]
        results = [one_launch(portal, token, BRANCHES[i % len(BRANCHES)])
                   for i in range(args.launches)]
    totals = [t for t, _ in results]
    starts = [steps["rollout"] for _, steps in results]
    rows = [("request -> ready", totals), ("app start (rollout)", starts),
            ("portal overhead", [t - s for t, s in zip(totals, starts, strict=True)])]
    rows += [(f"step {name}", [steps[name] for _, steps in results]) for name in results[0][1]]
    print(f"launches: {len(results)} (local runtime, sqlite pool, 2 components each)")
    for name, values in rows:
        print(f"{name:>20}: p50 {percentile(values, 0.5):.3f}s  p95 {percentile(values, 0.95):.3f}s"
              f"  mean {statistics.mean(values):.3f}s")


if __name__ == "__main__":
    main()
