"""Where branch code runs on this machine: the smoke suite, the seed SQL and every component of
the local runtime. Anyone who can push a branch writes that code, so it must not see the portal's
processes, files or environment.

With bubblewrap it runs in its own PID, IPC and UTS namespaces (a fresh /proc shows only the
sandbox), with nothing mounted but the system's /usr, a few files of /etc, the Python the portal
runs (its venv and base interpreter, read-only, so a project may start `python app.py`) and the
directories it is given. bwrap is started with the child's environment and nothing else: with
--unshare-pid bwrap itself is PID 1 inside, and its /proc/1/environ is readable. When the portal
runs as root, the code runs as `nobody` with no capabilities (root without capabilities could
still write sysctls such as kernel.core_pattern through /proc/sys), and what it may write is
handed over to `nobody`. The network is shared: components listen on loopback for the portal.

Without bubblewrap, PORTAL_SANDBOX=auto runs branch code as the portal's user (said at start and
on every environment page) and `required` refuses.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.conf import settings
from django.core import checks

from environments.backends import BackendError

NOBODY = 65534
# What the sandboxed code may read of /etc: names, certificates, time zones, the loader cache.
ETC = ("passwd", "group", "hosts", "resolv.conf", "nsswitch.conf", "host.conf", "gai.conf",
       "services", "protocols", "localtime", "ld.so.cache", "ld.so.conf", "ld.so.conf.d",
       "ssl", "ca-certificates", "alternatives", "mime.types")
# Only these of the portal's own variables reach branch code: never its secrets. In the sandbox
# its home and temporary files are its own /tmp.
PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ")
OWN_FILES = ("HOME", "TMPDIR")
MERGED_USR = ("bin", "lib", "lib64", "sbin")
UNSANDBOXED = ("branch code runs as the portal's user: install bubblewrap (Debian package "
               "bubblewrap) to sandbox smoke suites, seeds and components")


def bwrap() -> str | None:
    return shutil.which("bwrap")


def active() -> bool:
    """Whether branch code runs sandboxed; refuses to go on without one where one is required."""
    if bwrap():
        return True
    if settings.PORTAL_SANDBOX == "required":
        raise BackendError(f"PORTAL_SANDBOX=required, but {UNSANDBOXED.split(': ')[1]}")
    return False


def environ() -> dict[str, str]:
    """What branch code gets of the portal's environment, to add its own variables to."""
    inside = active()
    names = PASSED_THROUGH if inside else PASSED_THROUGH + OWN_FILES
    passed = {name: os.environ[name] for name in names if name in os.environ}
    return passed | dict.fromkeys(OWN_FILES, "/tmp") if inside else passed


def warning() -> str:
    """What an environment page says when branch code is not sandboxed ("" when it is)."""
    return "" if bwrap() else UNSANDBOXED


def command(argv: Sequence[str], *, writable: Iterable[Path] = (), readable: Iterable[Path] = (),
            cwd: Path | None = None, session_leader: bool = False) -> list[str]:
    """`argv` wrapped to run in the sandbox (unchanged where there is none); start the result
    with the child's environment only. `session_leader`: the caller keeps the sandbox alive
    after it exits (components), so it is not tied to the caller's life."""
    if not active():
        return list(argv)
    writable = [Path(p).resolve() for p in writable]
    hand_over(*writable)  # whoever made them (a copy, a restore), the code may write them
    readable = [Path(p) for p in (*_interpreter(), *readable)]
    options = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--cap-drop", "ALL", "--proc", "/proc", "--dev", "/dev",
               "--perms", "1777", "--tmpfs", "/tmp",
               "--ro-bind", "/usr", "/usr"]
    if not session_leader:
        options.append("--die-with-parent")
    for name in MERGED_USR:
        if Path(f"/{name}").is_symlink():
            options += ["--symlink", f"usr/{name}", f"/{name}"]
    options += [f for name in ETC if Path("/etc", name).exists()
                for f in ("--ro-bind", f"/etc/{name}", f"/etc/{name}")]
    options += _binds(readable, writable)
    if cwd is not None:
        options += ["--chdir", str(Path(cwd).resolve())]
    return [bwrap() or "bwrap", *options, *_unprivileged(), *argv]


def hand_over(*paths: Path) -> None:
    """Let the sandboxed code write `paths` (and what is in them)."""
    if os.geteuid() != 0 or not bwrap():
        return
    for path in paths:
        for root, directories, files in os.walk(path):
            os.chown(root, NOBODY, NOBODY)
            # bwrap, root without capabilities, enters it before it becomes nobody.
            os.chmod(root, os.stat(root).st_mode | 0o055)
            for name in (*directories, *files):
                os.chown(os.path.join(root, name), NOBODY, NOBODY, follow_symlinks=False)


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return ["--"]
    # bwrap keeps these two for setpriv alone; changing the uid clears every capability.
    return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--",
            "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all", "--no-new-privs", "--"]


def _interpreter() -> list[Path]:
    """The Python the portal runs (the venv and its base), wherever it is installed."""
    found = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(p for p in found if not p.is_relative_to("/usr"))


def _binds(readable: list[Path], writable: list[Path]) -> list[str]:
    """Bind mounts below a tmpfs root: bwrap makes missing parents 0700 (root's alone), so each
    one is made first, readable by the code's user."""
    options: list[str] = []
    made: set[Path] = {Path("/"), Path("/tmp"), Path("/usr"), Path("/etc")}
    mounts = [("--ro-bind", p) for p in readable] + [("--bind", p) for p in writable]
    for kind, path in sorted(mounts, key=lambda mount: len(mount[1].parts)):
        for parent in reversed(path.parents):
            if parent not in made and not any(parent.is_relative_to(p) for _, p in mounts
                                              if p != path):
                options += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
        options += [kind, str(path), str(path)]
        made.add(path)
    return options


@checks.register()
def sandbox_check(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """Said at every start of the portal (runserver, qcluster, `make run`)."""
    if bwrap() or settings.PORTAL_RUNTIME != "local":
        return []
    if settings.PORTAL_SANDBOX == "required":
        return [checks.Error(f"PORTAL_SANDBOX=required, but {UNSANDBOXED.split(': ')[1]}",
                      id="preview.E001")]
    return [checks.Warning(UNSANDBOXED, hint="or set PORTAL_SANDBOX=required to refuse to run",
                    id="preview.W001")]
