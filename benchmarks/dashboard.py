"""Dashboard and environments API at scale: 1,000 environments and 10,000 runs (80,000 steps)
in a fresh portal database; prints p50/p95 latency and the query count of a page of each (the
first, the last, and the API's largest), for the full data set and for a tenth of it (the counts
must not grow with the rows). The goal is p95 <= 100 ms a page.

    .venv/bin/python benchmarks/dashboard.py [--environments 1000] [--repeat 20]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def populate(count: int, runs_each: int) -> None:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from environments import dbpool, demo, naming
    from environments.models import (
        STEPS_BY_KIND,
        Environment,
        EnvironmentStatus,
        Run,
        RunKind,
        RunStatus,
        RunStep,
        StepStatus,
    )

    owner = User.objects.create_superuser("bench", password="bench-password")
    project = demo.register(demo.build_repository(Path(os.environ["PORTAL_VAR_DIR"]) / "repo"))
    dbpool.ensure_pool_size(0)
    now = timezone.now()
    environments = Environment.objects.bulk_create(
        Environment(project=project, branch=f"feature/bench-{i}",
                    env_key=naming.env_key(project.name, f"feature/bench-{i}"),
                    owner=owner, status=EnvironmentStatus.READY, commit="0" * 40,
                    urls={"web": f"http://127.0.0.1:{10000 + i}/"}, expires_at=now)
        for i in range(count)
    )
    runs = Run.objects.bulk_create(
        Run(environment=e, kind=RunKind.REDEPLOY, status=RunStatus.SUCCEEDED, commit="0" * 40,
            started_at=now, finished_at=now)
        for e in environments for _ in range(runs_each)
    )
    RunStep.objects.bulk_create(
        (RunStep(run=r, position=i, name=name, status=StepStatus.SUCCEEDED, started_at=now,
                 finished_at=now)
         for r in runs for i, name in enumerate(STEPS_BY_KIND[RunKind.REDEPLOY])),
        batch_size=5000,
    )


def measure(client, path: str, repeat: int, **headers: str) -> tuple[float, float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timings = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(path, **headers)
            timings.append(time.perf_counter() - started)
        assert response.status_code == 200, response.status_code
    return percentile(timings, 0.5), percentile(timings, 0.95), len(queries)


def report(label: str, client, token: str, repeat: int, pages: int) -> None:
    api = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for path, headers in (
        ("/", {}),
        (f"/?page={pages}", {}),
        ("/api/v1/environments", api),
        (f"/api/v1/environments?page={pages}", api),
        ("/api/v1/environments?per_page=200", api),
    ):
        p50, p95, queries = measure(client, path, repeat, **headers)
        print(f"{label:>28} {path:<38} p50 {p50 * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms  "
              f"{queries} queries")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--runs-each", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update({"PORTAL_DEBUG": "1", "PORTAL_VAR_DIR": tmp,
                           "DJANGO_SETTINGS_MODULE": "portal.settings"})
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.test import Client

        settings.ALLOWED_HOSTS = ["testserver"]
        call_command("migrate", verbosity=0)
        from django.contrib.auth.models import User

        from environments import tokens
        from environments.models import Environment

        populate(args.environments, args.runs_each)
        client = Client()
        client.login(username="bench", password="bench-password")
        token = tokens.create(User.objects.get(username="bench"))
        report(f"{args.environments} envs, {args.environments * args.runs_each} runs", client,
               token, args.repeat, last_page(args.environments))
        keep = list(Environment.objects.order_by("id").values_list("id", flat=True)
                    [: args.environments // 10])
        Environment.objects.exclude(id__in=keep).delete()
        report(f"{len(keep)} envs", client, token, args.repeat, last_page(len(keep)))


def last_page(environments: int) -> int:
    from environments.api import PAGE_SIZE

    return max(1, -(-environments // PAGE_SIZE))


if __name__ == "__main__":
    main()
