"""Runs the smoke suite of one environment with pytest in a subprocess and reads its result:
counts and failing checks from the JUnit XML, the report from pytest-html."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from django.conf import settings

from environments import dbpool, git, redact, sandbox
from environments.backends import BackendError
from environments.backends.pool import DbInfo
from environments.backends.runtime import url_variable
from environments.models import Environment
from environments.smoke import config

SUITE = Path(__file__).resolve().parent / "suite"
BUILT_IN = "preview_checks"
# One attempt; below the run's claim (services.CLAIM_SECONDS), which is renewed between them.
TIMEOUT_SECONDS = 100
DETAIL_CHARS = 300
PLUGINS = ("pytest_metadata.plugin", "pytest_html.plugin")
FAILING = ("failed", "error")
PROBLEMS = {"failure": "failed", "error": "error", "skipped": "skipped"}  # JUnit tag -> outcome
TESTS_RAN = (0, 1)  # pytest's exit codes: all passed, some failed; others say it could not run


@dataclass(frozen=True)
class Outcome:
    checks: list[dict[str, Any]]
    report: bytes = field(repr=False)

    def count(self, outcome: str) -> int:
        return sum(1 for check in self.checks if check["outcome"] == outcome)

    @property
    def failures(self) -> list[str]:
        return [check["name"] for check in self.checks if check["outcome"] in FAILING]

    @property
    def ok(self) -> bool:
        return not self.failures


class Suite:
    """The suite of one environment, laid out once in `directory` for all attempts of a step."""

    def __init__(self, environment: Environment, commit: str, directory: Path,
                 tests: str) -> None:
        self.environment = environment
        self.commit = commit
        self.directory = directory
        self.tests = tests
        slot = environment.slot
        if slot is None:
            raise BackendError("the environment holds no DB slot to check")
        self.database: DbInfo = dbpool.slot_connection(slot)

    def run(self, number: int, marker: str) -> Outcome:
        junit = self.directory / f"attempt-{number}.xml"
        report = self.directory / f"attempt-{number}.html"
        command = [
            sys.executable, "-m", "pytest", *(f"-p{plugin}" for plugin in PLUGINS),
            f"--junitxml={junit}", f"--html={report}", "--self-contained-html",
            # After "--": a path, never an option, whatever a stored configuration says.
            "--", f"{BUILT_IN}.py", *([self.tests] if self.tests else []),
        ]
        # The project's tests are the branch's code: sandboxed, given this folder and its slot.
        writable = [self.directory, *filter(None, [self.database.directory])]
        command = sandbox.command(command, writable=writable, cwd=self.directory)
        try:
            done = subprocess.run(
                command, cwd=self.directory, env=self._environ(marker), capture_output=True,
                timeout=TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL,
            )
            output, ran = (done.stdout + done.stderr).decode(errors="replace"), done.returncode
        except subprocess.TimeoutExpired as exc:
            output = ((exc.stdout or b"") + (exc.stderr or b"")).decode(errors="replace") + (
                f"\nthe smoke suite did not finish within {TIMEOUT_SECONDS} s")
            ran = None
        except OSError as exc:
            raise BackendError(f"cannot start pytest for the smoke suite: {exc}") from exc
        return self._redacted(_outcome(junit, report, output, ran in TESTS_RAN))

    def _environ(self, marker: str) -> dict[str, str]:
        env = self.environment
        urls = env.urls
        components = env.project.components.filter(name__in=list(urls))
        health = {c.name: list(c.health_paths) for c in components}
        cases = config.cases(env.project.smoke, urls, health, marker)
        return sandbox.environ() | {
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PREVIEW_SMOKE_CASES": json.dumps(cases),
            "PREVIEW_SMOKE_MARKER": marker,
            "PREVIEW_DATABASE_URL": self.database.url,
            "PREVIEW_DB_NAME": self.database.name,
            "PREVIEW_PROJECT": env.project.name,
            "PREVIEW_BRANCH": env.branch,
            "PREVIEW_COMMIT": self.commit,
            "PREVIEW_ENV_KEY": env.env_key,
        } | {url_variable(name): url for name, url in urls.items()}

    def _redacted(self, outcome: Outcome) -> Outcome:
        """A failing test may print the DSN or an env value; reports are readable by whoever has
        the link."""
        values = redact.secret_values(self.environment.project, self.database.password)
        checks = [c | {"detail": redact.secrets(c["detail"], values)} for c in outcome.checks]
        page = redact.secrets(outcome.report.decode(errors="replace"), values)
        return Outcome(checks, page.encode())


@contextmanager
def prepared(environment: Environment, commit: str) -> Iterator[Suite]:
    """The built-in checks plus the project's own test files of `commit`, in a scratch folder."""
    environment = Environment.objects.select_related("project").get(pk=environment.pk)
    tests = environment.project.smoke.get("tests", "")
    with tempfile.TemporaryDirectory(prefix="smoke-", dir=settings.VAR_DIR) as scratch:
        directory = Path(scratch)
        shutil.copytree(SUITE, directory, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        if tests:
            _export_tests(environment, commit, tests, directory)
        sandbox.hand_over(directory)
        yield Suite(environment, commit, directory, tests)


def _export_tests(environment: Environment, commit: str, path: str, directory: Path) -> None:
    """A path missing from the commit is left to pytest, whose error then names it."""
    project = environment.project
    mirror = git.mirror_path(project.name)
    git.sync_mirror(mirror, project.repository)
    git.export(mirror, commit, path, directory)


def _outcome(junit: Path, report: Path, output: str, tests_ran: bool) -> Outcome:
    page = report.read_bytes() if report.exists() else _plain_report(output)
    checks = [_check(case) for case in ElementTree.parse(junit).iter("testcase")] \
        if junit.exists() else []
    if not tests_ran:
        # Crashed, timed out, bad arguments, no tests: the suite itself is what failed.
        checks.append({"name": "pytest", "outcome": "error", "ok": False,
                       "detail": _last_word(output)})
    return Outcome(checks, page)


# How a failure reads when no HTTP answer came back at all, from the built-in checks (their own
# words) or from a project's tests (urllib's, requests' and the OS's words).
NO_ANSWER = ("no HTTP answer", "URLError", "ConnectionError", "ConnectionRefusedError",
             "Connection refused", "Name or service not known", "timed out")


def _check(case: ElementTree.Element) -> dict[str, Any]:
    classname, name = case.get("classname", ""), case.get("name", "")
    problem = next((child for child in case if child.tag in PROBLEMS), None)
    outcome = PROBLEMS[problem.tag] if problem is not None else "passed"
    detail = problem.get("message", "") if problem is not None else ""
    return {
        "name": name if classname == BUILT_IN else f"{classname}.{name}".strip("."),
        "outcome": outcome,
        "ok": outcome not in FAILING,
        "unreachable": outcome in FAILING and any(sign in detail for sign in NO_ANSWER),
        # The first line says what went wrong; pytest's own "assert False" follows it.
        "detail": detail.removeprefix("AssertionError: ").partition("\n")[0][:DETAIL_CHARS],
    }


def _last_word(output: str) -> str:
    """What pytest said last, its own ERROR line first."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = next((line for line in reversed(lines) if line.startswith("ERROR")), None)
    return (said or (lines[-1] if lines else "pytest wrote no result"))[:DETAIL_CHARS]


def _plain_report(output: str) -> bytes:
    return (
        "<!doctype html><meta charset=utf-8><title>Smoke checks did not run</title>"
        f"<h1>Smoke checks did not run</h1><pre>{html.escape(output)}</pre>"
    ).encode()
