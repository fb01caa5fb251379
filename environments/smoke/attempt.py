"""One smoke attempt, run where branch code may run (the local sandbox, a Kubernetes Job):
pytest on the suite in this folder, then everything the portal needs of it as one line on
stdout. Results so come back the way the attempt's output does (a pipe, a pod's log), and the
attempt holds no credential to send them anywhere. The standard library only, plus pytest.

    python attempt.py SECONDS PYTEST-ARGS...
"""

import base64
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = "PREVIEW-SMOKE-RESULTS "
PLUGINS = ("pytest_metadata.plugin", "pytest_html.plugin")
OUTPUT_CHARS = 20_000


def main(seconds: float, arguments: list[str]) -> dict[str, object]:
    # A copy to work in: a ConfigMap's mount is read-only, and pytest writes beside its files.
    work = Path(tempfile.mkdtemp(prefix="smoke-"))
    shutil.copytree(Path(__file__).resolve().parent, work / "suite", dirs_exist_ok=True,
                    symlinks=False, ignore=shutil.ignore_patterns("..*"))
    junit, report = work / "junit.xml", work / "report.html"
    command = [sys.executable, "-m", "pytest", *(f"-p{plugin}" for plugin in PLUGINS),
               f"--junitxml={junit}", f"--html={report}", "--self-contained-html", *arguments]
    try:
        done = subprocess.run(command, cwd=work / "suite", capture_output=True, timeout=seconds,
                              stdin=subprocess.DEVNULL, check=False)
        output, code = (done.stdout + done.stderr).decode(errors="replace"), done.returncode
    except subprocess.TimeoutExpired as exc:
        output = ((exc.stdout or b"") + (exc.stderr or b"")).decode(errors="replace") + (
            f"\nthe smoke suite did not finish within {seconds:g} s")
        code = None
    return {"exit": code, "output": output[-OUTPUT_CHARS:],
            "junit": _encoded(junit), "report": _encoded(report)}


def _encoded(path: Path) -> str | None:
    return base64.b64encode(path.read_bytes()).decode() if path.exists() else None


if __name__ == "__main__":
    print(RESULTS + json.dumps(main(float(sys.argv[1]), sys.argv[2:])), flush=True)
