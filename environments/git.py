"""The few git operations the portal needs, through the git command line."""

import fcntl
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from environments import redact
from environments.backends import BackendError

GIT_TIMEOUT = 120
PULL_HEAD = re.compile(r"pull/[1-9][0-9]*/head")
# Objects from a branch are checked as they arrive: git then refuses trees that name `..` or
# `.git`, which a checkout would refuse too but plumbing (and `export`) would write.
FSCK = ("-c", "transfer.fsckObjects=true")
# What `export` writes: plain files. A symlink would be followed by the next write; a submodule
# has no content here.
EXPORTED_MODES = frozenset({"100644", "100755"})
REFUSED_PARTS = frozenset({"", ".", "..", ".git"})


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
        raise BackendError(f"git {args[0]}: {redact.userinfo(message)}")
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
    """The head commit of the branch. `pull/<n>/head` is GitHub's ref of a pull request's head,
    the one way to reach the code of a pull request from a fork."""
    ref = f"refs/{branch}" if PULL_HEAD.fullmatch(branch) else f"refs/heads/{branch}"
    out = run("ls-remote", "--", repository, ref)
    # ls-remote matches patterns by their tail: keep the exact ref only.
    return next(
        (line.partition("\t")[0] for line in out.splitlines() if line.endswith("\t" + ref)), None
    )


@contextmanager
def locked(lockfile: Path) -> Iterator[None]:
    """One process at a time in a mirror (git's own ref locks fail rather than wait)."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with lockfile.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def sync_mirror(mirror: Path, repository: str) -> str:
    """Clone or fetch a bare mirror of the repository; say which."""
    with locked(mirror.with_suffix(".lock")):
        if not (mirror / "HEAD").exists():
            shutil.rmtree(mirror, ignore_errors=True)
            # --no-local: a clone from a path copies objects as they are, unchecked.
            run(*FSCK, "clone", "--mirror", "--no-local", "--quiet", "--", repository,
                str(mirror))
            return f"cloned {redact.userinfo(repository)}"
        run(*FSCK, "--git-dir", str(mirror), "fetch", "--prune", "--quiet", "origin")
        return f"fetched {redact.userinfo(repository)}"


def is_ancestor(mirror: Path, commit: str, descendant: str) -> bool:
    """Whether `commit` is `descendant` or one of its ancestors; False when either is not in the
    mirror."""
    try:
        done = subprocess.run(
            ["git", "--git-dir", str(mirror), "merge-base", "--is-ancestor", commit, descendant],
            capture_output=True, timeout=GIT_TIMEOUT, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError("git merge-base timed out", retryable=True) from exc
    return done.returncode == 0


def show(mirror: Path, commit: str, path: str) -> str:
    return run("--git-dir", str(mirror), "show", f"{commit}:{path}")


def mirror_path(project: str) -> Path:
    return Path(settings.VAR_DIR) / "git" / f"{project}.git"


def export(mirror: Path, commit: str, path: str, directory: Path) -> None:
    """Write the (text) files under `path` at `commit` below `directory`; BackendError, with
    nothing written, when an entry is not a plain file that stays inside `directory`."""
    listing = run("--git-dir", str(mirror), "ls-tree", "-r", "-z", commit, "--", path)
    entries = [entry.partition("\t") for entry in listing.split("\0") if entry]
    targets = [(_export_target(directory, meta.split(" ")[0], name), name)
               for meta, _, name in entries]
    for target, name in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(show(mirror, commit, name))


def _export_target(directory: Path, mode: str, name: str) -> Path:
    if mode not in EXPORTED_MODES:
        raise BackendError(f"{name!r} is not a plain file (git mode {mode}): the test files "
                           "must be regular files, not symlinks or submodules")
    target = directory / name
    outside = not target.resolve().is_relative_to(directory.resolve())
    if outside or any(part.lower() in REFUSED_PARTS for part in name.split("/")):
        raise BackendError(f"the test file name {name!r} would be written outside the test "
                           "folder (or into .git): refused")
    return target
