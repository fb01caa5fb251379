"""The few git operations the portal needs, through the git command line."""

import subprocess
from dataclasses import dataclass

from environments.backends import BackendError

GIT_TIMEOUT = 120


@dataclass(frozen=True)
class Branch:
    name: str
    commit: str


def run(*args: str, cwd: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"git {args[0]} timed out", retryable=True) from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise BackendError(f"git {args[0]}: {message}")
    return done.stdout.decode(errors="replace")


def is_valid_branch_name(name: str) -> bool:
    if not name or "\n" in name or "\0" in name:
        return False
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    return done.returncode == 0 and not name.startswith("-")


def branches(repository: str) -> list[Branch]:
    out = run("ls-remote", "--heads", "--", repository)
    found = []
    for line in out.splitlines():
        commit, _, ref = line.partition("\t")
        found.append(Branch(name=ref.removeprefix("refs/heads/"), commit=commit))
    return sorted(found, key=lambda b: b.name)


def resolve(repository: str, branch: str) -> str | None:
    return next((b.commit for b in branches(repository) if b.name == branch), None)
