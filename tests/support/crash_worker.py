"""Worker processes for the crash-resume tests (tests/test_crash_resume.py), each in a process
of its own against a portal database on disk:

    crash_worker.py prepare KIND [--commit SHA]
                    [--kill-before STEP | --kill-after-last | --kill-mid-apply]
        launch demo:main, and for a redeploy or teardown run the deploy undisturbed first;
        print "environment ID" (the run of KIND waits in the queue); given a kill point,
        then run that run as a django-q2 worker would, but SIGKILL this process at that point
        (one process where two would each pay Django's start: the tests start a few hundred)
    crash_worker.py resume ENV_ID
        a fresh worker: execute every task waiting in the queue (redeliveries included), then
        print what exists, as JSON
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(args: argparse.Namespace) -> None:
    from django.conf import settings

    from environments import lifecycle, pipeline

    if args.kill_before:
        step = pipeline.STEP_FUNCTIONS[args.kill_before]
        pipeline.STEP_FUNCTIONS[args.kill_before] = lambda ctx: die() or step(ctx)
    if args.kill_after_last:
        lifecycle.finish_run = lambda *a, **k: die()
    if args.kill_mid_apply:
        # Local: one component runs, the other never starts. Kubernetes: some objects are
        # applied, the rest never are.
        # The runtime's module only: importing the kubernetes client is ~0.3 s of CPU.
        if settings.PORTAL_RUNTIME == "kubernetes":
            from environments.backends.runtime.kubernetes import KubernetesRuntime
            runtime, method = KubernetesRuntime, "_apply_one"
        else:
            from environments.backends.runtime.local import LocalRuntime
            runtime, method = LocalRuntime, "_start"
        original = getattr(runtime, method)
        done: list[None] = []

        def then_die(self, *a, **k) -> None:
            if done:
                die()
            done.append(original(self, *a, **k))

        setattr(runtime, method, then_die)


def prepare(args: argparse.Namespace) -> None:
    from django.contrib.auth.models import User

    from environments import services, tasks
    from environments.models import Project, RunKind

    admin = User.objects.get(username="admin")
    project = Project.objects.get(name="demo")
    environment = services.launch(project, "main", actor=admin, interface="cli",
                                  commit=args.commit)
    if args.kind != RunKind.DEPLOY:
        tasks.execute_run(environment.runs.get().pk)
        if args.kind == RunKind.REDEPLOY:
            services.launch(project, "main", actor=admin, interface="cli")
        else:
            services.teardown(environment, actor=admin, interface="cli")
    print("environment", environment.pk, flush=True)
    if args.kill_before or args.kill_after_last or args.kill_mid_apply:
        arm(args)
        tasks.execute_run(environment.runs.order_by("id").last().pk)


def resume(args: argparse.Namespace) -> None:
    drain()
    state(args.env_id)


def drain() -> None:
    from django.utils.module_loading import import_string
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker = get_broker()
    while batch := broker.dequeue():
        for task_id, payload in batch:
            task = SignedPackage.loads(payload)
            import_string(task["func"])(*task["args"], **task["kwargs"])
            broker.acknowledge(task_id)


def state(env_id: int) -> None:
    from django.conf import settings

    from environments import git
    from environments.backends import get
    from environments.models import DbSlot, Environment, SlotState

    environment = Environment.objects.get(pk=env_id)
    runtime_dir = Path(settings.VAR_DIR) / "runtime"
    worktrees = git.mirror_path("demo") / "worktrees"
    print(json.dumps({
        "status": environment.status,
        "detail": environment.status_detail,
        "commit": environment.commit,
        "urls": sorted(environment.urls),
        "runs": [r.status for r in environment.runs.order_by("id")],
        "leased": list(DbSlot.objects.filter(environment=environment)
                       .values_list("name", flat=True)),
        "free": DbSlot.objects.filter(state=SlotState.FREE).count(),
        "process_groups": processes_under(runtime_dir),
        # What the runtime holds for it (local: its directory and processes; Kubernetes: its
        # objects), counted: names carry pids and ports that differ from run to run.
        "objects": len(get("runtime").inventory().get(environment.env_key, [])),
        "worktrees": len(list(worktrees.iterdir())) if worktrees.exists() else 0,
    }))


def processes_under(directory: Path) -> int:
    """Live process groups (one per started component) running in the directory."""
    root = str(directory.resolve())
    groups = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(proc / "cwd").startswith(root):
                state, _, group = (proc / "stat").read_text().rpartition(")")[2].split()[:3]
                if state != "Z":
                    groups.add(group)
        except OSError:
            continue
    return len(groups)


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    preparer = commands.add_parser("prepare")
    preparer.add_argument("kind")
    preparer.add_argument("--commit")
    preparer.add_argument("--kill-before")
    preparer.add_argument("--kill-after-last", action="store_true")
    preparer.add_argument("--kill-mid-apply", action="store_true")
    resumer = commands.add_parser("resume")
    resumer.add_argument("env_id", type=int)
    args = parser.parse_args()
    import django

    django.setup()
    {"prepare": prepare, "resume": resume}[args.command](args)


if __name__ == "__main__":
    main()
