"""Pages. Function-based views; state changes go through services, permissions through roles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial, wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import OuterRef, Prefetch, Q, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from environments import datasets, dbpool, git, reconciler, roles, sandbox, services
from environments import metrics as portal_metrics
from environments.backends import BackendError, get
from environments.models import (
    ACTIVE,
    QA_NOTE_CHARS,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    QaState,
    ReconcilePass,
    Run,
    RunKind,
    RunStep,
    SlotState,
    SmokeAttempt,
    StepStatus,
)
from environments.refused import Refused

View = Callable[..., HttpResponse]
FILTERS = ("project", "status", "branch", "owner", "smoke", "qa", "mine")
SMOKE_RESULTS = ("passed", "failed", "none")
DASHBOARD_PAGE = 50
RUNS_SHOWN = 20
AUDIT_SHOWN = 50
LOG_LINES = 200
PASSES_SHOWN = 10
EXTEND_HOURS = (24.0, 72.0, 168.0)
# A resetting slot whose reset failed: out of rotation until the scheduled retry works.
BROKEN = "broken"
USAGE = (SlotState.FREE, SlotState.RESTORING, SlotState.WARM, SlotState.LEASED,
         SlotState.RESETTING, BROKEN)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Counts and durations only (no names), for Prometheus to scrape without a session."""
    return HttpResponse(portal_metrics.exposition(),
                        content_type="text/plain; version=0.0.4; charset=utf-8")


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


def requires(action: str) -> Callable[[View], View]:
    """Log in first, then hold a role that may do `action` (403 otherwise)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return _to_login(request)
            if not roles.can(request.user, action):
                raise PermissionDenied(f"your role does not allow {action}")
            return view(request, *args, **kwargs)

        return guarded

    return decorate


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


def _to_login(request: HttpRequest) -> HttpResponse:
    if _is_htmx(request):
        # A poll whose session expired: a plain redirect would swap the login page into
        # the polled fragment, so send the whole browser tab to the login page instead.
        page = request.headers.get("HX-Current-URL") or request.get_full_path()
        response = HttpResponse(status=204)
        response["HX-Redirect"] = redirect_to_login(page).url
        return response
    return redirect_to_login(request.get_full_path())


# Dashboard.

@require_GET
@requires(roles.VIEW)
def dashboard(request: HttpRequest) -> HttpResponse:
    chosen = {name: request.GET.get(name, "").strip() for name in FILTERS}
    # Past the last page shows the last one: a poll of a page that emptied still shows rows.
    page = Paginator(_filtered(chosen, request.user), DASHBOARD_PAGE).get_page(
        request.GET.get("page"))
    environments = list(page)
    positions = dbpool.queue_positions()
    filters = request.GET.copy()
    filters.pop("page", None)
    context = {
        "rows": [_row(env, positions.get(env.pk)) for env in environments],
        "polling": any(env.in_progress for env in environments),
        "chosen": chosen,
        "filtered": any(chosen.values()),
        "query": request.GET.urlencode(),
        "page": page,
        "filters": filters.urlencode(),
    }
    if _is_htmx(request):
        return render(request, "environments/partials/environment_rows.html", context)
    context |= {
        "projects": Project.objects.values_list("name", flat=True),
        "statuses": [s for s in EnvironmentStatus if s in ACTIVE],
        "smoke_results": SMOKE_RESULTS,
        "qa_states": QaState.choices,
        "owners": get_user_model().objects.filter(environment__in=Environment.objects.active())
        .distinct().order_by("username").values_list("username", flat=True),
    }
    return render(request, "environments/dashboard.html", context)


def _filtered(chosen: dict[str, str], user: Any) -> QuerySet[Environment]:
    environments = _with_facts(Environment.objects.active()).select_related(
        "project", "owner").order_by("-created_at", "-id")
    if chosen["project"]:
        environments = environments.filter(project__name=chosen["project"])
    if chosen["status"]:
        environments = environments.filter(status=chosen["status"])
    if chosen["branch"]:
        environments = environments.filter(_branch_or_pull_request(chosen["branch"]))
    if chosen["owner"]:
        environments = environments.filter(owner__username=chosen["owner"])
    if chosen["mine"]:
        environments = environments.filter(owner=user)
    if chosen["smoke"] in SMOKE_RESULTS:
        environments = environments.filter(_smoke_result(chosen["smoke"]))
    if chosen["qa"] in (*QaState.values, "none"):
        environments = environments.qa_signed(chosen["qa"])
    return environments


def _with_facts(environments: QuerySet[Environment]) -> QuerySet[Environment]:
    """Each row's DB slot and latest smoke attempt inside the one query of the page: the
    dashboard's query count stays the same however many rows it shows."""
    slot = DbSlot.objects.filter(environment=OuterRef("pk")).values("name")[:1]
    latest = SmokeAttempt.objects.filter(run__environment=OuterRef("pk")).order_by(
        "-run_id", "-number")
    return environments.annotate(
        slot_name=Subquery(slot),
        **{f"smoke_{name}": Subquery(latest.values(name)[:1])
           for name in ("passed", "failed", "errors", "report_key")},
    )


def _branch_or_pull_request(text: str) -> Q:
    """"#12" or "12" finds pull request 12 too."""
    number = text.removeprefix("#")
    found = Q(branch__icontains=text)
    return found | Q(pull_request=int(number)) if number.isdigit() else found


def _smoke_result(result: str) -> Q:
    if result == "none":
        return Q(smoke_passed__isnull=True)
    failing = Q(smoke_failed__gt=0) | Q(smoke_errors__gt=0)
    return failing if result == "failed" else Q(smoke_passed__isnull=False) & ~failing


@dataclass(frozen=True)
class Row:
    environment: Environment
    queue_position: int | None
    database: str
    report_url: str

    @property
    def smoke(self) -> str:
        """"passed", "failed", or "" before any smoke attempt."""
        env = self.environment
        if env.smoke_passed is None:
            return ""
        return "failed" if env.smoke_failed or env.smoke_errors else "passed"


def _row(env: Environment, position: int | None) -> Row:
    database = get("pool").connection(env.slot_name).public()["name"] if env.slot_name else ""
    report = get("storage").url(env.smoke_report_key) if env.smoke_report_key else ""
    return Row(env, position, database, report)


# Launch.

@require_http_methods(["GET", "POST"])
@requires(roles.LAUNCH)
def launch(request: HttpRequest) -> HttpResponse:
    source = request.POST if request.method == "POST" else request.GET
    projects = list(Project.objects.all())
    chosen = next((p for p in projects if p.name == source.get("project")), None)
    branch = source.get("branch", "")
    if request.method == "POST":
        try:
            environment = _launch(request, chosen, branch)
        except Refused as refused:
            return _launch_form(request, projects, chosen, branch, refused)
        messages.success(request, f"Launching {environment}.")
        return redirect("environment", pk=environment.pk)
    return _launch_form(request, projects, chosen, branch)


def _launch(request: HttpRequest, project: Project | None, branch: str) -> Environment:
    if project is None:
        raise Refused("choose one of the projects", 404)
    return services.launch(project, branch, actor=request.user, interface=Interface.WEB)


def _launch_form(request: HttpRequest, projects: list[Project], chosen: Project | None,
                 branch: str, refused: Refused | None = None) -> HttpResponse:
    chosen = chosen or (projects[0] if projects else None)
    context = {
        "projects": projects,
        "chosen": chosen,
        "branch": branch,
        "error": refused,
        # Said before the click: launching a new branch now would be refused.
        "over_quota": services.quota_problem(chosen, request.user) if chosen else None,
    }
    return render(request, "environments/launch.html", context,
                  status=refused.status if refused else 200)


@require_GET
@requires(roles.VIEW)
def branch_options(request: HttpRequest, name: str) -> HttpResponse:
    project = get_object_or_404(Project, name=name)
    try:
        branches = git.branches(project.repository)
    except BackendError as exc:
        # Still 200: htmx swaps only successful answers, and the reason belongs in the select.
        return render(request, "environments/partials/branch_options.html", {"error": exc})
    wanted = request.GET.get("selected", "")
    # Only a listed branch is preselected; otherwise the placeholder is.
    selected = wanted if any(b.name == wanted for b in branches) else ""
    context = {"branches": branches, "selected": selected}
    return render(request, "environments/partials/branch_options.html", context)


# One environment.

@require_GET
@requires(roles.VIEW)
def environment(request: HttpRequest, pk: int) -> HttpResponse:
    env = _environment_or_404(pk)
    context = _live_context(request, env) | {
        "manifests": env.runs.exclude(rendered="").only("pk", "kind", "rendered").first(),
        "components": env.project.components.values_list("name", flat=True),
        "audit_events": env.audit_events.all()[:AUDIT_SHOWN],
        "unsandboxed": sandbox.warning() if settings.PORTAL_RUNTIME == "local" else "",
        "may_sign_off": services.may_sign_off(request.user) and env.is_active and bool(env.commit)
        and env.status != EnvironmentStatus.TEARING_DOWN,
        "qa_states": QaState.choices,
        "qa_note_chars": QA_NOTE_CHARS,
    }
    return render(request, "environments/environment.html", context)


@require_GET
@requires(roles.VIEW)
def environment_live(request: HttpRequest, pk: int) -> HttpResponse:
    env = _environment_or_404(pk)
    context = _live_context(request, env)
    response = render(request, "environments/partials/environment_live.html", context)
    if _is_htmx(request) and not context["polling"]:
        # The work just ended: reload once so the runs, manifests and audit log catch up.
        response["HX-Refresh"] = "true"
    return response


def _environment_or_404(pk: int) -> Environment:
    return get_object_or_404(Environment.objects.select_related("project", "owner"), pk=pk)


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    current: RunStep | None

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


def _live_context(request: HttpRequest, env: Environment) -> dict[str, Any]:
    steps = RunStep.objects.prefetch_related("lines")
    run = env.runs.prefetch_related(Prefetch("steps", queryset=steps)).first()
    busy = env.in_progress or bool(run and run.is_open)
    return {
        "environment": env,
        "run": run,
        "progress": _progress(run),
        "polling": busy,
        "queue_position": (position := dbpool.queue_position(env)),
        "queue_free_by": dbpool.slot_free_by(position) if position else None,
        "expiring": _expiring(env),
        "extend_hours": EXTEND_HOURS,
        "database": _database(env),
        "dataset": _dataset(env),
        "smoke_attempts": _smoke_attempts(env),
        "actions": _actions(request, env, busy),
        "runs": env.runs.select_related("requested_by")[:RUNS_SHOWN],
    }


def _expiring(env: Environment) -> bool:
    """Inside the warning window: the page shows a banner."""
    if env.pinned or not env.expires_at or not env.is_active:
        return False
    window = timedelta(hours=settings.PORTAL_EXPIRY_WARNING_HOURS)
    return env.expires_at - timezone.now() <= window


def _progress(run: Run | None) -> Progress:
    steps = list(run.steps.all()) if run else []
    finished = (StepStatus.SUCCEEDED, StepStatus.SKIPPED)
    unfinished = [s for s in steps if s.status not in finished]
    # A failed or cancelled run names no current step: nothing is being worked on.
    current = unfinished[0] if run and run.is_open and unfinished else None
    return Progress(done=len(steps) - len(unfinished), total=len(steps), current=current)


def _database(env: Environment) -> dict[str, str] | None:
    slot = env.slot
    return get("pool").connection(slot.name).public() if slot else None


def _dataset(env: Environment) -> dict[str, Any] | None:
    """The dataset version its slot got (kept while it holds the slot), and the project's
    current one when that is newer."""
    slot = DbSlot.objects.select_related("dataset").filter(environment=env).first()
    if slot is None or slot.dataset is None:
        return None
    current = datasets.current(env.project)
    return {"version": slot.dataset, "newer": current if current != slot.dataset else None}


def _smoke_attempts(env: Environment) -> list[tuple[Any, str]]:
    run = env.runs.filter(kind__in=(RunKind.DEPLOY, RunKind.REDEPLOY, RunKind.SMOKE)).first()
    if run is None:
        return []
    storage = get("storage")
    return [
        (attempt, storage.url(attempt.report_key) if attempt.report_key else "")
        for attempt in run.smoke_attempts.all()
    ]


def _actions(request: HttpRequest, env: Environment, busy: bool) -> dict[str, bool]:
    """Buttons to show: the role allows it and the status does (services re-check both)."""
    going = env.status in (EnvironmentStatus.TEARING_DOWN, EnvironmentStatus.TORN_DOWN)
    verified = env.status in (EnvironmentStatus.READY, EnvironmentStatus.DEGRADED)
    admin = roles.can(request.user, roles.PIN)
    changeable = services.may_change(env, request.user)  # pinned: its owner or an admin
    return {
        "extend": not going and not env.pinned and (admin or (
            roles.can(request.user, roles.EXTEND) and env.owner_id == request.user.pk)),
        "pin": admin and not going,
        "redeploy": roles.can(request.user, roles.REDEPLOY) and not going and changeable,
        "teardown": roles.can(request.user, roles.TEARDOWN) and not going and changeable,
        # While a run is open another smoke run would only queue behind it.
        "smoke": roles.can(request.user, roles.SMOKE) and verified and not busy,
    }


@require_GET
@requires(roles.VIEW)
def component_logs(request: HttpRequest, pk: int, component: str) -> HttpResponse:
    env = _environment_or_404(pk)
    if not env.project.components.filter(name=component).exists():
        raise Http404(f"{env.project.name} has no component {component!r}")
    try:
        text, error = get("runtime").logs(env.env_key, component, LOG_LINES), ""
    except BackendError as exc:
        text, error = "", str(exc)
    context = {"environment": env, "component": component, "text": text, "error": error}
    return render(request, "environments/partials/component_logs.html", context)


# Changes.

def _change(request: HttpRequest, pk: int, change: Callable[..., Any], done: str) -> HttpResponse:
    env = _environment_or_404(pk)
    try:
        change(env, actor=request.user, interface=Interface.WEB)
    except Refused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"{done} {env}.")
    return redirect("environment", pk=pk)


@require_POST
@requires(roles.REDEPLOY)
def redeploy(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.redeploy, "Redeploying")


@require_POST
@requires(roles.EXTEND)
def extend(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        hours = float(request.POST.get("hours") or EXTEND_HOURS[0])
    except ValueError:
        hours = None
    if hours not in EXTEND_HOURS:
        offered = ", ".join(f"{choice:g}" for choice in EXTEND_HOURS)
        return HttpResponseBadRequest(f"hours must be one of the offered choices: {offered}")
    extended = partial(services.extend, hours=hours)
    return _change(request, pk, extended, f"Extended by {hours:g} hours:")


@require_POST
@requires(roles.PIN)
def pin(request: HttpRequest, pk: int) -> HttpResponse:
    pinned = request.POST.get("pinned") == "1"
    change = partial(services.set_pinned, pinned=pinned)
    return _change(request, pk, change, "Pinned" if pinned else "Unpinned")


@require_POST
@requires(roles.TEARDOWN)
def teardown(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.teardown, "Tearing down")


@require_POST
@requires(roles.SMOKE)
def smoke(request: HttpRequest, pk: int) -> HttpResponse:
    return _change(request, pk, services.rerun_smoke, "Rerunning the smoke checks of")


@require_POST
@requires(roles.VIEW)
def qa_signoff(request: HttpRequest, pk: int) -> HttpResponse:
    if not services.may_sign_off(request.user):
        raise PermissionDenied("only QA or an admin may sign off a commit")
    env = _environment_or_404(pk)
    state = request.POST.get("state", "")
    try:
        problems = services.qa_signoff(
            env, state, request.POST.get("note", "").strip(), actor=request.user,
            interface=Interface.WEB, commit=request.POST.get("commit") or None,
        )
    except Refused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, f"QA: {QaState(state).label} for {env.commit[:7]} of {env}.")
        for problem in problems:
            messages.warning(request, problem)
    return redirect("environment", pk=pk)


# DB pool.

@require_GET
@requires(roles.VIEW)
def pool(request: HttpRequest) -> HttpResponse:
    context = _pool_context()
    if _is_htmx(request):
        return render(request, "environments/partials/pool_live.html", context)
    return render(request, "environments/pool.html", context | {"max_size": dbpool.MAX_POOL_SIZE})


def _pool_context() -> dict[str, Any]:
    # Numeric order: preview_100 comes after preview_99, not after preview_10.
    slots = sorted(DbSlot.objects.select_related("environment__project", "dataset__project"),
                   key=lambda slot: (len(slot.name), slot.name))
    rows = [(slot, _shown_state(slot)) for slot in slots]
    active = [row for row in rows if row[1] != SlotState.RETIRED]
    counts = Counter(state for _, state in active)
    return {
        "rows": active,
        "groups": datasets.pool_groups(active, USAGE),
        "retired": [row for row in rows if row[1] == SlotState.RETIRED],
        "usage": [(state, counts[state]) for state in USAGE],
        "size": len(active),
        # Broken slots too: the scheduled retry may bring them back any minute.
        "polling": any(slot.state in (SlotState.RESETTING, SlotState.RESTORING)
                       for slot, _ in active),
    }


def _shown_state(slot: DbSlot) -> str:
    return BROKEN if slot.state == SlotState.RESETTING and slot.error else slot.state


@require_POST
@requires(roles.MANAGE_POOL)
def pool_resize(request: HttpRequest) -> HttpResponse:
    try:
        size = _requested_size(request)
        result = dbpool.resize_pool(size, actor=request.user, interface=Interface.WEB)
    except Refused as refused:
        messages.error(request, str(refused))
    except BackendError as exc:
        messages.error(request, f"the pool server refused: {exc}")
    else:
        messages.success(request, f"pool resized to {result['size']} "
                                  f"({result['added']} added, {result['retired']} retired)")
    return redirect("pool")


def _requested_size(request: HttpRequest) -> int:
    try:
        size = int(request.POST.get("size", ""))
    except ValueError:
        size = -1
    if not 0 <= size <= dbpool.MAX_POOL_SIZE:
        raise Refused(f"the pool size must be a whole number from 0 to {dbpool.MAX_POOL_SIZE}")
    return size


# Health: the reconciler's last pass.

@require_GET
@requires(roles.HEALTH)
def health(request: HttpRequest) -> HttpResponse:
    recent = list(ReconcilePass.objects.all()[:PASSES_SHOWN])
    return render(request, "environments/health.html", {
        "last": recent[0] if recent else None, "recent": recent,
    })


@require_POST
@requires(roles.HEALTH)
def health_reconcile(request: HttpRequest) -> HttpResponse:
    done = reconciler.run_pass(dry_run=False, actor=request.user, interface=Interface.WEB)
    failed = sum(f["action"].startswith("failed:") for f in done.findings)
    fixed = len(done.findings) - failed
    if failed:
        messages.error(request, f"reconcile pass: {fixed} fixed, {failed} failed")
    else:
        messages.success(request, f"reconcile pass: {fixed} finding(s) fixed")
    return redirect("health")


# Reports.

@require_GET
def report(request: HttpRequest, key: str) -> HttpResponse:
    """Opened by whoever holds an unexpired signed link (from the environment page, the API or
    Slack), with no portal session, like a presigned S3 link."""
    storage = get("storage")
    if not storage.link_valid(key, request.GET.get("signature", "")):
        return HttpResponse(
            "This report link is invalid or has expired: open the report from the "
            "environment's page for a fresh one.\n", status=403, content_type="text/plain")
    try:
        content = storage.read(key)
    except BackendError as exc:
        raise Http404(str(exc)) from exc
    response = HttpResponse(content, content_type="text/html; charset=utf-8")
    # A report holds output of the previewed branch: its scripts must not run as the portal.
    response["Content-Security-Policy"] = "sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    # The link is the credential: it must not leak to the sites a report links to.
    response["Referrer-Policy"] = "no-referrer"
    return response
