"""A hostile branch's smoke test (tests/test_sandbox.py launches it): it looks for what the portal
keeps from branch code. Every test passes when it finds nothing; each prints what it tried, and
the report shows that."""

import os
import sqlite3
import time
from pathlib import Path

# Names only the portal's own processes have in their environment.
PORTAL_NAMES = ("PORTAL_SECRET_KEY", "PORTAL_POOL_MYSQL_URL", "PORTAL_GITHUB_TOKEN",
                "PORTAL_GITHUB_WEBHOOK_SECRET", "SLACK_BOT_TOKEN", "AWS_SECRET_ACCESS_KEY",
                "DJANGO_SETTINGS_MODULE")
TOKEN_PATHS = ("/var/run/secrets/kubernetes.io/serviceaccount/token",
               "/run/secrets/kubernetes.io/serviceaccount/token")
SKIPPED = {"/proc", "/sys", "/dev"}
WALK_SECONDS = 20
SQLITE_HEADER = b"SQLite format 3\0"


def test_no_process_shows_the_portal_environment() -> None:
    tried, found = 0, []
    for proc in sorted(Path("/proc").glob("[0-9]*")):
        for name in ("environ", "cmdline"):
            try:
                data = (proc / name).read_bytes()
            except OSError:
                continue
            tried += 1
            found += [f"{proc / name}: {secret}" for secret in PORTAL_NAMES
                      if secret.encode() + b"=" in data]
    print(f"read {tried} environ/cmdline files of the processes in /proc; "
          f"looked for {', '.join(PORTAL_NAMES)}")
    assert not found, "the portal's environment is readable: " + "; ".join(found)


def test_no_service_account_token() -> None:
    print("tried " + ", ".join(TOKEN_PATHS))
    readable = [path for path in TOKEN_PATHS if os.access(path, os.R_OK)]
    assert not readable, f"a Kubernetes token is readable: {readable}"


def test_no_portal_database_is_visible() -> None:
    """Beside this folder and the slot first (where the portal keeps it), then everywhere."""
    near = [*Path.cwd().parents, *_slot_parents()]
    candidates = [path for directory in near for path in _files(directory)]
    deadline, seen = time.monotonic() + WALK_SECONDS, len(candidates)
    for root, directories, files in os.walk("/"):
        directories[:] = [d for d in directories if os.path.join(root, d) not in SKIPPED]
        candidates += [Path(root, name) for name in files]
        if time.monotonic() > deadline:
            break
    portal = [str(path) for path in candidates if _is_portal_database(path)]
    print(f"looked at {seen} files beside the scratch folder and the slot, then walked "
          f"{len(candidates) - seen} files from /; opened every SQLite file for auth_user")
    assert not portal, f"the portal's database is visible: {portal}"


def _slot_parents() -> list[Path]:
    url = os.environ.get("PREVIEW_DATABASE_URL", "")
    return list(Path(url.removeprefix("sqlite:///")).parents) if url.startswith("sqlite:") else []


def _files(directory: Path) -> list[Path]:
    try:
        return [path for path in directory.iterdir() if path.is_file()]
    except OSError:
        return []


def _is_portal_database(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            if handle.read(16) != SQLITE_HEADER:
                return False
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except (OSError, sqlite3.Error):
        return False
    return "auth_user" in tables
