"""Runs the smoke suite of one environment where the runtime runs branch code (the local sandbox,
a Kubernetes Job) and reads its result: counts and failing checks from the JUnit XML, the report
from pytest-html, both sent back on the attempt's last line of output (attempt.py)."""

from __future__ import annotations

import base64
import html
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from django.conf import settings

from environments import dbpool, git, redact
from environments.backends import BackendError, get
from environments.backends.pool import DbInfo
from environments.backends.runtime import Log, SuiteRun, url_variable
from environments.models import Environment
from environments.smoke import config
from environments.smoke.attempt import RESULTS

SUITE = Path(__file__).resolve().parent / "suite"
ATTEMPT = Path(__file__).resolve().parent / "attempt.py"
BUILT_IN = "preview_checks"
# One attempt; below the run's claim (PORTAL_CLAIM_SECONDS), which is renewed between them.
TIMEOUT_SECONDS = 100
DETAIL_CHARS = 300
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
    """The suite of one environment at one commit: the same files for all attempts of a step."""

    def __init__(self, environment: Environment, commit: str, run_pk: int,
                 files: dict[str, bytes], tests: str) -> None:
        self.environment = environment
        self.commit = commit
        self.run_pk = run_pk
        self.files = files
        self.tests = tests
        slot = environment.slot
        if slot is None:
            raise BackendError("the environment holds no DB slot to check")
        self.database: DbInfo = dbpool.slot_connection(slot)
        self.runtime = get("runtime")
        env = environment
        components = list(env.project.components.values_list("name", flat=True))
        # Where the checks reach the app: on Kubernetes its Services, from inside the cluster.
        self.urls = self.runtime.suite_urls(env.env_key, components, env.urls)

    def run(self, number: int, marker: str, log: Log) -> Outcome:
        suite = SuiteRun(
            env_key=self.environment.env_key, name=f"smoke-{self.run_pk}-{number}",
            files=self.files, environ=self._environ(marker), timeout=TIMEOUT_SECONDS,
            # After "--": a path, never an option, whatever a stored configuration says.
            python_args=(ATTEMPT.name, str(TIMEOUT_SECONDS), "--", f"{BUILT_IN}.py",
                     *([self.tests] if self.tests else [])),
            image=self.environment.project.smoke.get("image") or settings.PORTAL_SMOKE_IMAGE,
            database_directory=self.database.directory,
        )
        return self._redacted(_outcome(self.runtime.run_suite(suite, log)))

    def _environ(self, marker: str) -> dict[str, str]:
        env = self.environment
        health = {c.name: list(c.health_paths)
                  for c in env.project.components.filter(name__in=list(self.urls))}
        cases = config.cases(env.project.smoke, self.urls, health, marker)
        return {
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
        } | {url_variable(name): url for name, url in self.urls.items()}

    def _redacted(self, outcome: Outcome) -> Outcome:
        """A failing test may print the DSN or an env value; reports are readable by whoever has
        the link."""
        values = redact.secret_values(self.environment.project, self.database.password)
        checks = [c | {"detail": redact.secrets(c["detail"], values)} for c in outcome.checks]
        page = redact.secrets(outcome.report.decode(errors="replace"), values)
        return Outcome(checks, page.encode())


def prepared(environment: Environment, commit: str, run_pk: int) -> Suite:
    """The built-in checks, the project's own test files of `commit` and the script that runs
    them, as files for the runtime."""
    environment = Environment.objects.select_related("project").get(pk=environment.pk)
    tests = environment.project.smoke.get("tests", "")
    with tempfile.TemporaryDirectory(prefix="smoke-", dir=settings.VAR_DIR) as scratch:
        directory = Path(scratch)
        shutil.copytree(SUITE, directory, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ATTEMPT, directory)
        if tests:
            _export_tests(environment, commit, tests, directory)
        files = {str(path.relative_to(directory)): path.read_bytes()
                 for path in sorted(directory.rglob("*")) if path.is_file()}
    return Suite(environment, commit, run_pk, files, tests)


def _export_tests(environment: Environment, commit: str, path: str, directory: Path) -> None:
    """A path missing from the commit is left to pytest, whose error then names it."""
    project = environment.project
    mirror = git.mirror_path(project.name)
    git.sync_mirror(mirror, project.repository)
    git.export(mirror, commit, path, directory)


def _outcome(output: str) -> Outcome:
    """From the attempt's last result line; an attempt that printed none could not run."""
    line = next((line for line in reversed(output.splitlines()) if line.startswith(RESULTS)), "")
    try:
        result = json.loads(line.removeprefix(RESULTS)) if line else {}
    except ValueError:
        result = {}
    said = str(result.get("output") or output)
    report, junit = _decoded(result.get("report")), _decoded(result.get("junit"))
    checks = [_check(case) for case in ElementTree.fromstring(junit).iter("testcase")] \
        if junit else []
    if result.get("exit") not in TESTS_RAN:
        # Crashed, timed out, bad arguments, no tests: the suite itself is what failed.
        unsaid = "" if line else "the smoke attempt reported no result: "
        checks.append({"name": "pytest", "outcome": "error", "ok": False,
                       "detail": (unsaid + _last_word(said))[:DETAIL_CHARS]})
    return Outcome(checks, report or _plain_report(said))


def _decoded(value: object) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True) if value else b""
    except ValueError:
        return b""


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
