"""Loaded by pytest in the smoke subprocess (the conftest of its rootdir).

Reports are served sandboxed (no script runs), and pytest-html draws its results table with a
script; so this adds a table of every check by name, with its outcome and message, that reads
without one, and hides pytest-html's script-only parts when scripts are off (from S3, which
serves no sandbox header, they work)."""

import html
import os

import pytest

OUTCOME_STYLE = {"passed": "#1a7f37", "failed": "#cf222e", "error": "#cf222e",
                 "skipped": "#9a6700"}
RESULTS: dict[str, tuple[str, str]] = {}  # nodeid -> (outcome, message)
CELL = "padding:2px 8px;color:#1f2328;vertical-align:top;text-align:left"
SCRIPT_ONLY = "#environment-header, #environment, p.filter, .controls, #results-table"


def pytest_html_report_title(report) -> None:
    project, branch = os.environ.get("PREVIEW_PROJECT", ""), os.environ.get("PREVIEW_BRANCH", "")
    report.title = f"Smoke checks: {project} {branch}"


def _message(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash else str(report.longrepr or "")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.passed and report.when != "call":
        return
    # A setup or teardown that fails is an error, as in the JUnit XML.
    outcome = "error" if report.when != "call" and report.failed else report.outcome
    if RESULTS.get(report.nodeid, ("",))[0] not in ("failed", "error"):
        RESULTS[report.nodeid] = (outcome, "" if report.passed else _message(report))


def pytest_html_results_summary(prefix: list[str], summary: list[str], postfix: list[str],
                                session: pytest.Session) -> None:
    rows = "".join(
        f'<tr><td style="{CELL}"><code>{html.escape(nodeid)}</code></td>'
        f'<td style="{CELL};font-weight:600;color:{OUTCOME_STYLE.get(outcome, "")}">'
        f'{outcome}</td><td style="{CELL};white-space:pre-wrap">{html.escape(message)}</td></tr>'
        for nodeid, (outcome, message) in RESULTS.items()
    )
    outcomes = [outcome for outcome, _ in RESULTS.values()]
    counts = ", ".join(f"{outcomes.count(o)} {o}" for o in OUTCOME_STYLE)
    prefix.append(
        f"<noscript><style>{SCRIPT_ONLY} {{ display: none }}</style></noscript>"
        '<h2>Checks</h2><table id="checks" style="border-collapse:collapse;margin-bottom:1em">'
        f'<thead><tr><th style="{CELL}">check</th><th style="{CELL}">outcome</th>'
        f'<th style="{CELL}">message</th></tr></thead><tbody>{rows}</tbody></table>'
        f'<p id="check-counts"><b>{counts}</b></p>'
    )
