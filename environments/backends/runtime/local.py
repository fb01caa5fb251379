"""Embedded runtime: each component a detached local process in a git worktree of the branch.

Layout under PORTAL_VAR_DIR/runtime/<env_key>/: `src/` (the worktree), `<component>.json`
(pid, process start time, port, commit), `logs/<component>.log`.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

from environments import git, probes, sandbox
from environments.backends import BackendError
from environments.backends.runtime import (
    ComponentSpec,
    Log,
    Runtime,
    SuiteRun,
    Target,
    public_url_variable,
    url_variable,
)

STOP_GRACE_SECONDS = 5.0
SUITE_GRACE_SECONDS = 30  # beyond the attempt's own timeout, for it to report


@dataclass(frozen=True)
class Process:
    pid: int
    start_time: int
    port: int
    commit: str
    # Every component's port as this process was told them (PREVIEW_URL_*).
    plan: dict[str, int] = field(default_factory=dict)


def _proc_stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw.rpartition(")")[2].split()
    return fields[0], int(fields[19])


def is_alive(process: Process) -> bool:
    stat = _proc_stat(process.pid)
    return stat is not None and stat[0] not in {"Z", "X"} and stat[1] == process.start_time


@contextmanager
def _reserved_port(preferred: int | None) -> Iterator[int]:
    """A loopback port nobody else gets while the context is open (the caller starts the
    process after closing it)."""
    for candidate in (preferred or 0, 0):
        with socket.socket() as sock:
            if candidate:
                # As servers do: a port in TIME_WAIT from the component's previous run is free.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            yield int(sock.getsockname()[1])
            return
    raise BackendError("no free loopback port", retryable=True)


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}/"


class LocalRuntime(Runtime):
    def __init__(self) -> None:
        self.root = Path(settings.VAR_DIR) / "runtime"

    def _dir(self, key: str) -> Path:
        return self.root / key

    def _worktree(self, key: str) -> Path:
        return self._dir(key) / "src"

    def _log_path(self, key: str, component: str) -> Path:
        return self._dir(key) / "logs" / f"{component}.log"

    def _record_path(self, key: str, component: str) -> Path:
        return self._dir(key) / f"{component}.json"

    def process(self, key: str, component: str) -> Process | None:
        try:
            return Process(**json.loads(self._record_path(key, component).read_text()))
        except FileNotFoundError:
            return None

    def inventory(self) -> dict[str, list[str]]:
        if not self.root.exists():
            return {}
        return {
            directory.name: [f"directory {directory}"] + [
                f"process {name}: {state}"
                for name, state in self.component_states(directory.name).items()
            ]
            for directory in sorted(self.root.iterdir())
        }

    def render(self, target: Target) -> str:
        worktree = self._worktree(target.env_key)
        lines = [f"# local runtime: worktree of {target.commit[:12]} in {worktree}"]
        peers = {variable: "" for variable in self._peers(target, {})}
        for spec in target.components:
            health = ", ".join(spec.health_paths) or "(port accepts connections)"
            lines += [
                f"{spec.name}:",
                f"  command: {spec.start_command}",
                f"  ready when: {health} answers 2xx",
                f"  exposed: {'yes' if spec.exposed else 'no'}",
                "  env: " + ", ".join(sorted(
                    {**target.env, **target.secret_env, **spec.env, **peers, "PORT": ""}
                )),
            ]
        return "\n".join(lines) + "\n"

    def apply(self, target: Target, log: Log) -> None:
        key = target.env_key
        current = {spec.name: self.process(key, spec.name) for spec in target.components}
        up_to_date = {
            name for name, proc in current.items()
            if proc and proc.commit == target.commit and is_alive(proc)
        }
        if len(up_to_date) == len(target.components):
            log(f"all {len(up_to_date)} components already run {target.commit[:12]}")
            return
        if self._checked_out(key) != target.commit:
            for name in current:
                self._stop(key, name, log)
            up_to_date = set()
            self._checkout(target, log)
        ports = self._ports(target, current, up_to_date)
        # A running component told other ports than these (one moved, or never started where
        # planned) holds wrong URLs: it restarts too.
        for name in [n for n in up_to_date if current[n].plan != ports]:
            self._stop(key, name, log)
            up_to_date.discard(name)
        for spec in target.components:
            if spec.name not in up_to_date:
                self._start(target, spec, ports, log)

    @staticmethod
    def _ports(target: Target, current: dict[str, Process | None],
               running: set[str]) -> dict[str, int]:
        """Every component's port before any starts, so each can be told where the others are;
        a component keeps its port when it can (links to it stay valid)."""
        # Where the running components expect the others (a worker may have died between two
        # starts): keeping that plan spares them a restart.
        planned = next((current[name].plan for name in running if current[name].plan), {})
        ports = {}
        with ExitStack() as reserved:
            for spec in target.components:
                old = current[spec.name]
                if old and spec.name in running:
                    ports[spec.name] = old.port
                else:
                    preferred = old.port if old else planned.get(spec.name)
                    ports[spec.name] = reserved.enter_context(_reserved_port(preferred))
        return ports

    def wait_ready(self, target: Target, log: Log, timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        urls = {}
        for spec in target.components:
            proc = self.process(target.env_key, spec.name)
            if proc is None:
                raise BackendError(f"{spec.name} was never started")
            self._wait_component(target.env_key, spec, proc, deadline, log)
            if spec.exposed:
                urls[spec.name] = _url(proc.port)
        return urls

    def address(self, target: Target) -> str | None:
        return None

    def suite_urls(self, env_key: str, components: list[str], urls: dict[str, str]
                   ) -> dict[str, str]:
        return dict(urls)

    def run_suite(self, suite: SuiteRun, log: Log) -> str:
        """In the sandbox, given a scratch folder with the suite and the slot's directory."""
        with tempfile.TemporaryDirectory(prefix="smoke-", dir=settings.VAR_DIR) as scratch:
            directory = Path(scratch)
            for name, content in suite.files.items():
                (directory / name).parent.mkdir(parents=True, exist_ok=True)
                (directory / name).write_bytes(content)
            command = sandbox.command(
                [sys.executable, *suite.python_args], cwd=directory,
                writable=[directory, *filter(None, [suite.database_directory])])
            try:
                done = subprocess.run(
                    command, cwd=directory, env=sandbox.environ() | suite.environ,
                    capture_output=True, timeout=suite.timeout + SUITE_GRACE_SECONDS,
                    check=False, stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as exc:
                raise BackendError(f"{suite.name} did not end", retryable=True) from exc
            except OSError as exc:
                raise BackendError(f"cannot start the smoke suite: {exc}") from exc
        return (done.stdout + done.stderr).decode(errors="replace")

    def delete(self, env_key: str, log: Log) -> None:
        directory = self._dir(env_key)
        if not directory.exists():
            log("nothing of this environment is on this machine")
            return
        for record in sorted(directory.glob("*.json")):
            self._stop(env_key, record.stem, log)
        self._remove_worktree(env_key, log)
        shutil.rmtree(directory, ignore_errors=True)
        log(f"removed {directory}")

    def logs(self, env_key: str, component: str, lines: int = 200) -> str:
        path = self._log_path(env_key, component)
        try:
            with path.open("rb") as handle:
                handle.seek(max(0, path.stat().st_size - 64 * 1024))
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def component_states(self, env_key: str) -> dict[str, str]:
        states = {}
        for record in sorted(self._dir(env_key).glob("*.json")):
            proc = self.process(env_key, record.stem)
            if proc is None:
                continue
            where = f"pid {proc.pid}, port {proc.port}"
            states[record.stem] = f"running ({where})" if is_alive(proc) else f"exited ({where})"
        return states

    def _checked_out(self, key: str) -> str | None:
        worktree = self._worktree(key)
        if not (worktree / ".git").exists():
            return None
        try:
            # The worktree is the sandbox user's: git would refuse it as another user's repository.
            return git.run("-c", f"safe.directory={worktree}", "-C", str(worktree),
                           "rev-parse", "HEAD").strip()
        except BackendError:
            return None

    def _checkout(self, target: Target, log: Log) -> None:
        mirror = git.mirror_path(target.project)
        log(git.sync_mirror(mirror, target.repository))
        worktree = self._worktree(target.env_key)
        with git.locked(mirror.with_suffix(".lock")):
            if worktree.exists():
                shutil.rmtree(worktree)
                git.run("--git-dir", str(mirror), "worktree", "prune")
            git.run(
                "--git-dir", str(mirror), "worktree", "add", "--detach", "--force",
                str(worktree), target.commit,
            )
        log(f"checked out {target.commit[:12]} of {target.branch!r} in {worktree}")

    def _remove_worktree(self, key: str, log: Log) -> None:
        worktree = self._worktree(key)
        gitfile = worktree / ".git"
        mirror = None
        if gitfile.is_file():
            # "gitdir: <mirror>/worktrees/<name>": the mirror that must forget this worktree.
            mirror = Path(gitfile.read_text().split(":", 1)[1].strip()).parent.parent
        shutil.rmtree(worktree, ignore_errors=True)
        if mirror and mirror.exists():
            git.run("--git-dir", str(mirror), "worktree", "prune")
            log(f"removed worktree {worktree}")

    def _start(self, target: Target, spec: ComponentSpec, ports: dict[str, int],
               log: Log) -> None:
        key, port = target.env_key, ports[spec.name]
        if not spec.start_command:
            raise BackendError(f"component {spec.name} has no start command for the local runtime")
        log_path = self._log_path(key, spec.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        pidfile = self._dir(key) / f"{spec.name}.pid"
        pidfile.unlink(missing_ok=True)
        environ = sandbox.environ()
        environ.update(target.env)
        environ.update(target.secret_env)
        environ.update(self._peers(target, ports))
        environ.update(spec.env)
        environ.update({"PORT": str(port), "PYTHONUNBUFFERED": "1"})
        worktree = self._worktree(key)
        writable = [worktree, *filter(None, [target.database_directory])]
        command = sandbox.command(["/bin/sh", "-c", spec.start_command], writable=writable,
                                  cwd=worktree, session_leader=True)
        # setsid -f: the process leads its own session (one group to stop at teardown) and is
        # not our child, so it outlives the worker that started it. The pid is the sandbox's.
        script = 'echo $$ > "$0"; shift; exec "$@"'
        with log_path.open("ab") as out:
            subprocess.run(
                ["setsid", "-f", "/bin/sh", "-c", script, str(pidfile), "-", *command],
                cwd=worktree, env=environ, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, check=True, timeout=30,
            )
        pid = self._read_pid(pidfile)
        stat = _proc_stat(pid)
        if stat is None:
            raise BackendError(f"{spec.name} exited at once:\n{self.logs(key, spec.name, 20)}")
        record = Process(pid=pid, start_time=stat[1], port=port, commit=target.commit,
                         plan=ports)
        self._record_path(key, spec.name).write_text(json.dumps(asdict(record)))
        log(f"started {spec.name} (pid {pid}) on port {port}: {spec.start_command}")

    @staticmethod
    def _peers(target: Target, ports: dict[str, int]) -> dict[str, str]:
        """Where each component finds the others: here peers and browsers use the same URL."""
        urls = {spec.name: _url(ports[spec.name]) if ports else "" for spec in target.components}
        exposed = [spec.name for spec in target.components if spec.exposed]
        return {url_variable(name): url for name, url in urls.items()} | {
            public_url_variable(name): urls[name] for name in exposed}

    @staticmethod
    def _read_pid(pidfile: Path) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            if text:
                pidfile.unlink()
                return int(text)
            time.sleep(0.01)
        raise BackendError("the process did not report its pid", retryable=True)

    def _stop(self, key: str, component: str, log: Log) -> None:
        proc = self.process(key, component)
        if proc is None:
            return
        if is_alive(proc):
            self._signal(proc, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while is_alive(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
            if is_alive(proc):
                self._signal(proc, signal.SIGKILL)
            log(f"stopped {component} (pid {proc.pid})")
        else:
            log(f"{component} (pid {proc.pid}) was not running")
        self._record_path(key, component).unlink(missing_ok=True)

    @staticmethod
    def _signal(proc: Process, sig: signal.Signals) -> None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _wait_component(
        self, key: str, spec: ComponentSpec, proc: Process, deadline: float, log: Log
    ) -> None:
        paths = spec.health_paths or ("",)
        for path in paths:
            url = f"http://127.0.0.1:{proc.port}{path}"
            last = ""
            while True:
                if not is_alive(proc):
                    tail = self.logs(key, spec.name, 20)
                    raise BackendError(f"{spec.name} (pid {proc.pid}) died while starting:\n{tail}")
                answer = probes.get(url) if path else probes.connect("127.0.0.1", proc.port)
                if answer.ok:
                    where = path or f"port {proc.port}"
                    log(f"{spec.name}: {where} answered {answer.summary}")
                    break
                last = answer.summary
                if time.monotonic() > deadline:
                    tail = self.logs(key, spec.name, 20)
                    raise BackendError(
                        f"{spec.name} did not answer {url} with 2xx in time "
                        f"(last: {last}); last log lines:\n{tail}",
                        retryable=True,
                    )
                time.sleep(0.1)
