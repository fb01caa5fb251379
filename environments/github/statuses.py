"""What a pull request shows of its environment: a commit status on the deployed commit, and one
comment (edited in place by every run) with the URLs, the database, the smoke report, QA's
sign-off and where the minutes went; QA's sign-off is a commit status `preview/qa` of its own,
which a branch protection rule can require; replies to a delivery or a command. Only with
PORTAL_GITHUB_TOKEN, for environments of a pull request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from environments.backends import BackendError, get
from environments.github.client import GitHub
from environments.models import (
    Environment,
    EnvironmentStatus,
    QaState,
    Run,
    RunKind,
    RunStatus,
)

Log = Callable[[str], None]
EXTEND_COMMAND = "/preview extend"  # a reply on the pull request (github/commands.py)
FENCE = "`" * 3  # opens and closes a markdown code block
QA_CONTEXT = "preview/qa"
DESCRIPTION_CHARS = 140  # GitHub refuses a longer commit status description
# What the comment's timing table shows: label, step (None: queue, run created → first step).
TIMED_STEPS = (("queue", None), ("lease", "lease_db"), ("apply", "apply"),
               ("rollout", "rollout"), ("smoke", "smoke"))


def client() -> GitHub | None:
    """The API, or None without PORTAL_GITHUB_TOKEN (the portal then tells GitHub nothing)."""
    token = settings.PORTAL_GITHUB_TOKEN
    return GitHub(settings.PORTAL_GITHUB_API_URL, token) if token else None


def reply_on(repository: str, number: int, login: str = "") -> Callable[[str], None] | None:
    """Posts a reply on the pull request (addressed to `login`); None without a GitHub token."""
    github = client()
    if github is None:
        return None
    mention = f"@{login} " if login else ""
    return lambda text: github.create_comment(repository, number, mention + text)


def publish(run: Run, page_url: str, log: Log) -> None:
    """Tell the pull request where the run stands. GitHub's errors go to `log` only: a deploy
    never fails because GitHub could not be told."""
    github = client()
    if github is None:
        return
    environment = Environment.objects.select_related("project").get(pk=run.environment_id)
    repository = environment.project.github_repository
    if not (environment.pull_request and repository):
        return
    run = Run.objects.prefetch_related("steps").get(pk=run.pk)
    if run.kind != RunKind.TEARDOWN:  # a closed pull request keeps its last verdict
        state, target, description = status_of(run, environment, page_url)
        _attempt(log, "commit status", lambda: github.set_status(
            repository, run.commit, state, target, description,
            context=f"preview-portal/{environment.project.name}",
        ))
    if _superseded(environment):
        return  # the comment shows the pull request's newer environment now
    body = comment_body(run, environment, page_url)
    _attempt(log, "pull-request comment", lambda: _comment(github, environment, body))


def publish_qa(environment: Environment, log: Log) -> None:
    """Tell the pull request QA's sign-off of the deployed commit: the `preview/qa` status and
    its line in the comment. GitHub's errors go to `log`."""
    from environments.pipeline import portal_url  # the pipeline imports this module

    github = client()
    repository = environment.project.github_repository
    signoff = environment.qa
    if github is None or not (environment.pull_request and repository and signoff):
        return
    page_url = portal_url(environment)
    state = "success" if signoff["state"] == QaState.APPROVED else "failure"
    _attempt(log, "QA commit status", lambda: github.set_status(
        repository, signoff["commit"], state, page_url, qa_description(environment),
        context=QA_CONTEXT,
    ))
    run = environment.runs.exclude(kind=RunKind.TEARDOWN).prefetch_related("steps").first()
    if run is None or _superseded(environment):
        return
    body = comment_body(run, environment, page_url)
    _attempt(log, "pull-request comment", lambda: _comment(github, environment, body))


def qa_description(environment: Environment) -> str:
    """The note (what a reviewer reads first on the pull request), or who decided without one."""
    text = environment.qa_note or f"{environment.get_qa_state_display()} by {environment.qa_by}"
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_CHARS else text[:DESCRIPTION_CHARS - 1] + "…"


def warn_expiry(environment: Environment) -> None:
    """A new comment (so the pull request's people are notified) saying when the environment
    expires and how to extend it from there; BackendError when GitHub refuses."""
    github = client()
    repository = environment.project.github_repository
    if github is None or not (environment.pull_request and repository):
        return
    github.create_comment(repository, environment.pull_request, expiry_warning(environment))


def expiry_warning(environment: Environment) -> str:
    return (
        f"⏳ The preview of {_code(environment.branch)} ({_code(environment.project.name)}) "
        f"expires at **{when(environment.expires_at)}** and is torn down then.\n\n"
        f"To keep it, reply `{EXTEND_COMMAND} 2d` (or `12h`, `3d`: hours or days, at most "
        f"{hours_text(settings.PORTAL_ENV_MAX_TTL_HOURS)} from now); it takes someone with write "
        "access to the repository.\n"
    )


def when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment else "(no expiry)"


def hours_text(hours: float) -> str:
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{hours:g} hour{'s' if hours != 1 else ''}"


def _superseded(environment: Environment) -> bool:
    """A pull request reopened during its teardown has a newer environment already."""
    return Environment.objects.filter(
        project=environment.project, pull_request=environment.pull_request,
        pk__gt=environment.pk,
    ).exists()


def _attempt(log: Log, what: str, call: Callable[[], object]) -> None:
    try:
        call()
    except BackendError as exc:
        log(f"GitHub {what} not updated ({exc}); the run goes on")


def status_of(run: Run, environment: Environment, page_url: str) -> tuple[str, str, str]:
    """(state, target URL, description) of the commit status."""
    if run.status == RunStatus.WAITING:
        return "pending", page_url, "queued: waiting for a free DB slot"
    if run.is_open:
        return "pending", page_url, f"{run.kind} of {run.commit[:7]} in progress"
    if run.status == RunStatus.SUCCEEDED and environment.status == EnvironmentStatus.READY:
        return "success", next(iter(environment.urls.values()), page_url), "preview ready"
    return "failure", page_url, environment.status_detail or run.error or f"{run.kind} {run.status}"


def _comment(github: GitHub, environment: Environment, body: str) -> None:
    """Edit the pull request's comment, or post it the first time (or after someone deleted
    it)."""
    repository = environment.project.github_repository
    known = environment.github_comment_id or _earlier_comment(environment)
    if known and github.update_comment(repository, known, body):
        comment_id = known
    else:
        comment_id = github.create_comment(repository, environment.pull_request, body)
    if comment_id != environment.github_comment_id:
        Environment.objects.filter(pk=environment.pk).update(github_comment_id=comment_id)


def _earlier_comment(environment: Environment) -> int | None:
    """A pull request reopened later gets a new environment, but keeps its one comment."""
    return Environment.objects.filter(
        project=environment.project, pull_request=environment.pull_request,
        github_comment_id__isnull=False,
    ).order_by("-id").values_list("github_comment_id", flat=True).first()


def comment_body(run: Run, environment: Environment, page_url: str) -> str:
    marker = f"<!-- preview-portal:{environment.project.name} -->"
    title = (f"{marker}\n**Preview of {_code(environment.branch)}** "
             f"({_code(environment.project.name)}): ")
    if run.kind == RunKind.TEARDOWN:
        return title + f"**{environment.status}** ([portal]({page_url}))\n"
    lines = [title + f"**{environment.status}** at {_code(run.commit[:7])}", ""]
    if environment.status_detail:  # may span lines (a component's last output)
        lines += [FENCE, environment.status_detail.replace(FENCE, "'''"), FENCE, ""]
    lines += ["| | |", "|---|---|"]
    lines += [f"| {name} | {url} |" for name, url in environment.urls.items()]
    lines += [f"| {label} | {value} |" for label, value in _facts(run, environment, page_url)]
    lines += ["", f"Where the time went (run {run.pk}, {run.kind}):", ""]
    timings = step_timings(run)
    lines += ["| " + " | ".join(label for label, _ in timings) + " |",
              "|" + "---|" * len(timings),
              "| " + " | ".join(_seconds(value) for _, value in timings) + " |"]
    return "\n".join(lines) + "\n"


def _facts(run: Run, environment: Environment, page_url: str) -> list[tuple[str, str]]:
    facts = []
    slot = environment.slot
    if slot:
        facts.append(("database", _code(get("pool").connection(slot.name).public()["name"])))
    attempt = run.smoke_attempts.order_by("-number").first()
    if attempt and attempt.report_key:
        verdict = "passed" if attempt.ok else f"{attempt.failed} failed"
        facts.append(("smoke report", f"[{verdict}]({get('storage').url(attempt.report_key)})"))
    signoff = environment.qa
    if signoff and signoff["commit"] == run.commit:
        facts.append(("QA", qa_line(environment)))
    facts.append(("portal", f"[environment {environment.pk}]({page_url})"))
    return facts


def qa_line(environment: Environment) -> str:
    verdict = "✅ approved" if environment.qa_state == QaState.APPROVED else "❌ changes requested"
    note = " ".join(environment.qa_note.split()).replace("|", "\\|")  # one table cell
    return (f"**{verdict}** by {_code(environment.qa_by)} at {when(environment.qa_at)}"
            + (f": {note}" if note else ""))


def step_timings(run: Run) -> list[tuple[str, float | None]]:
    """Seconds per stage (None: not run, or not finished), then the total."""
    steps = {step.name: step for step in run.steps.all()}
    starts = [step.started_at for step in steps.values() if step.started_at]
    timings: list[tuple[str, float | None]] = []
    for label, name in TIMED_STEPS:
        if name is None:
            timings.append((label, (min(starts) - run.created_at).total_seconds()
                            if starts else None))
        else:
            timings.append((label, steps[name].duration if name in steps else None))
    end = run.finished_at or timezone.now()
    timings.append(("total", (end - run.created_at).total_seconds()))
    return timings


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    return f"{minutes} min {seconds:02d} s"


def _code(text: str) -> str:
    # A backtick in a branch name would end the code span early.
    return "`" + text.replace("`", "'") + "`"
