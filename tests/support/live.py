"""A real portal (web + worker, as `make run` starts it) in subprocesses, for browser tests and
benchmarks. Everything it writes stays under its own PORTAL_VAR_DIR."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = re.compile(r"Log in as: admin / (\S+)")


@dataclass(frozen=True)
class Portal:
    url: str
    password: str
    var_dir: Path

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=portal_env(self.var_dir),
            capture_output=True, text=True, check=True, timeout=120,
        )
        return done.stdout


def log_in(page, portal: Portal) -> None:
    """As admin, through the login page (page: a Playwright page)."""
    from playwright.sync_api import expect

    page.goto(portal.url + "/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", portal.password)
    page.click("button[type=submit], input[type=submit]")
    expect(page).to_have_url(re.compile(r"/$"))


def launch_from_form(page, portal: Portal, branch: str) -> None:
    """Launch a demo branch through the launch form and land on the environment's page."""
    from playwright.sync_api import expect

    page.goto(portal.url + "/launch?project=demo")
    # demo is preselected; choosing it again would reload the branch list under our choice.
    expect(page.locator(f'#branch option[value="{branch}"]')).to_have_count(1)
    page.select_option("#branch", branch)
    expect(page.locator("#branch")).to_have_value(branch)
    page.get_by_role("button", name=re.compile("Launch")).click()
    expect(page).to_have_url(re.compile(r"/environments/\d+$"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def portal_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")}
    env.update({"PORTAL_DEBUG": "1", "PORTAL_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@contextmanager
def running_portal(var_dir: Path, **settings: str) -> Iterator[Portal]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = portal_env(var_dir, PORTAL_BASE_URL=url, **settings)
    log = (var_dir.parent / f"portal-{port}.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_portal", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        password = _wait_until_up(process, url, Path(log.name))
        yield Portal(url=url, password=password, var_dir=var_dir)
    finally:
        stop_group(process, grace=20)
        kill_previews(var_dir)
        log.close()


def stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the process (started with start_new_session), as Kubernetes stops a container's
    first process, then SIGKILL what is left of its group. Not SIGTERM to the whole group:
    django-q2's cluster never stops when its own children are sent SIGTERM beside it."""
    process.terminate()
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"portal exited:\n{log.read_text()[-3000:]}")
        found = PASSWORD.search(log.read_text())
        if found:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=2).close()
                return found.group(1)
            except OSError:
                pass
        time.sleep(0.2)
    raise RuntimeError(f"portal did not come up:\n{log.read_text()[-3000:]}")


def kill_previews(var_dir: Path) -> None:
    """Stop preview processes left running from this portal's worktrees."""
    root = str(var_dir.resolve())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(root):
            with suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
