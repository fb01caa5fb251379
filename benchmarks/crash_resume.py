"""Resume after a crash on a laptop: the whole portal (web, worker, `make run`) SIGKILLed in the
middle of a deploy, then started again on the same var dir. Prints, per round and as p50/max,
the seconds from the restart (as `make run` is typed again) until another worker has taken the
run over, and until the environment has settled.

    .venv/bin/python benchmarks/crash_resume.py [--rounds 3]
"""

import argparse
import os
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.live import running_portal  # noqa: E402

BRANCH = "slow/warm-up"  # its components take 4 s to answer: the deploy is mid-rollout a while


def state(var: Path) -> tuple[str, str, str]:
    """(environment status, its last run's status, who holds that run)."""
    db = sqlite3.connect(var / "portal.sqlite3", timeout=10)
    try:
        return db.execute(
            "SELECT e.status, r.status, r.claimed_by FROM environments_environment e "
            "JOIN environments_run r ON r.environment_id = e.id ORDER BY r.id DESC LIMIT 1"
        ).fetchone() or ("", "", "")
    finally:
        db.close()


def until(check, limit: float = 300) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > limit:
            raise RuntimeError("gave up waiting")
        time.sleep(0.1)
    return time.monotonic() - start


def one_round(root: Path) -> tuple[float, float]:
    var = root / "var"
    with running_portal(var) as portal:
        portal.manage("launch", "demo", BRANCH, "--user", "admin")
        until(lambda: state(var)[0] == "provisioning" and state(var)[2] != "", 60)
        time.sleep(1)  # inside the rollout's wait
        holder = state(var)[2]
        group = next(int(p.name) for p in Path("/proc").glob("[0-9]*")
                     if _is_portal(p, portal.url.rsplit(":", 1)[1]))
        os.killpg(os.getpgid(group), signal.SIGKILL)
    restart = time.monotonic()  # `make run` again: migrate, demo, pool, then web and worker
    with running_portal(var):
        until(lambda: state(var)[2] not in ("", holder))
        taken = time.monotonic() - restart
        until(lambda: state(var)[0] in ("ready", "degraded", "failed"))
        ready = time.monotonic() - restart
    return taken, ready


def _is_portal(proc: Path, port: str) -> bool:
    try:
        return b"run_portal" in (proc / "cmdline").read_bytes() and port.encode() in (
            proc / "cmdline").read_bytes()
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    taken, ready = [], []
    for number in range(rounds):
        with tempfile.TemporaryDirectory() as root:
            took, done = one_round(Path(root))
        print(f"round {number + 1}: run taken over {took:.1f} s after the restart, "
              f"environment settled {done:.1f} s after it")
        taken.append(took)
        ready.append(done)
    print(f"taken over: p50 {statistics.median(taken):.1f} s, max {max(taken):.1f} s; "
          f"settled: p50 {statistics.median(ready):.1f} s, max {max(ready):.1f} s")


if __name__ == "__main__":
    main()
