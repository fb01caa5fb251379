"""What the xdist workers of one test run build once and share: the first worker to ask builds
it under a file lock while the others wait, then everyone reads what it wrote."""

import fcntl
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def once(path: Path, build: Callable[[], Any]) -> Any:
    """build()'s JSON-able result, built by one process and read from `path` by every other.
    A build that fails leaves nothing behind, so the next process to ask tries again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            built = json.dumps(build())
            path.with_name(path.name + ".tmp").write_text(built)
            path.with_name(path.name + ".tmp").rename(path)
        return json.loads(path.read_text())
