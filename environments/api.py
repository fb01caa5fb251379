"""The JSON API for CI and scripts (DESIGN.md, "JSON API", a contract other teams call as
written). Every endpoint takes a bearer token and checks the caller's role; every error is
`{"error": ..., "detail": ...}`. State changes go through environments.services only."""

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from ninja import Field, NinjaAPI, Query, Schema, Status, Swagger
from ninja.errors import AuthenticationError, AuthorizationError, HttpError, ValidationError
from ninja.security import HttpBearer

from environments import datasets, dbpool, git, redact, roles, services, tokens
from environments.backends import BackendError, get
from environments.models import (
    QA_NOTE_CHARS,
    Component,
    DatasetState,
    DatasetVersion,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    QaState,
    Run,
    SlotState,
    SmokeAttempt,
)
from environments.refused import Refused

RUNS_LISTED = 5
# Environment lists come in pages, as on the dashboard: all history at once would not scale.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class OfflineSwagger(Swagger):
    """Swagger UI from the portal's static files. ninja renders its offline page only when it
    is an installed app (it is not: settings.NINJA_DIR), and otherwise a page that loads the UI
    from a CDN: that page is rendered from this path, so it is the offline one."""

    template_cdn = str(Path(Swagger.template_cdn).with_name("swagger.html"))


api = NinjaAPI(
    title="Preview Portal API",
    version="1",
    description="Preview environments for every branch. Send `Authorization: Bearer <token>` "
    "(create one with `manage.py create_api_token USER`). Errors are "
    '`{"error": "...", "detail": ...}`.',
    docs=OfflineSwagger(),
)


# Authentication and roles.

class TokenAuth(HttpBearer):
    """A token of an active user whose role allows `action`. Checked before the body is read,
    so a caller without the role learns nothing from validation errors."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__()

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        user = tokens.user_for(token)
        if user is not None and not roles.can(user, self.action):
            raise AuthorizationError(message=f"your role does not allow {self.action}")
        return user


class SignOffAuth(HttpBearer):
    """A token of QA or an admin (services.may_sign_off), checked before the body is read."""

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser | None:
        user = tokens.user_for(token)
        if user is not None and not services.may_sign_off(user):
            raise AuthorizationError(message="only QA or an admin may sign off a commit")
        return user


# Errors: one JSON shape whatever raised them.

def _error(request: HttpRequest, status: int, error: str, detail: Any = None) -> HttpResponse:
    return api.create_response(request, {"error": error, "detail": detail}, status=status)


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return _error(request, 422, "invalid request", exc.errors)


@api.exception_handler(AuthenticationError)
def _unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(request, 401, "a valid API token is required (Authorization: Bearer ...)")
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, exc.message)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, str(exc) or "not found")


@api.exception_handler(Refused)
def _refused(request: HttpRequest, exc: Refused) -> HttpResponse:
    return _error(request, exc.status, exc.message, exc.detail or None)


@api.exception_handler(BackendError)
def _backend_failed(request: HttpRequest, exc: BackendError) -> HttpResponse:
    return _error(request, 502, str(exc), {"retryable": exc.retryable})


# Schemas: what goes in and out (they make the OpenAPI document).

class ErrorOut(Schema):
    error: str
    detail: Any = None


class ComponentOut(Schema):
    name: str
    image: str
    port: int
    health_paths: list[str]
    exposed: bool
    env_names: list[str] = Field(
        description="Names of its environment variables; values are never shown (secrets)."
    )


class ProjectOut(Schema):
    name: str
    repository: str = Field(description="Git URL, without any credentials it holds.")
    github_repository: str = Field(description="owner/name, what webhooks are matched on.")
    components: list[ComponentOut]


class BranchOut(Schema):
    name: str
    commit: str


class LaunchIn(Schema):
    project: str
    branch: str = Field(min_length=1, max_length=255)
    commit: str | None = Field(None, description="Defaults to the branch head.")
    pull_request: int | None = Field(None, ge=1)


class DatabaseOut(Schema):
    slot: str
    name: str
    host: str


class StepOut(Schema):
    name: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None


class RunOut(Schema):
    id: int
    kind: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    steps: list[StepOut] | None = Field(
        None, description="Each step with its times; in GET of one environment only."
    )


class SmokeOut(Schema):
    status: Literal["passed", "failed"]
    passed: int
    failed: int
    errors: int = Field(description="Tests that could not run (their setup broke, or pytest's).")
    report_url: str | None


class QaOut(Schema):
    state: QaState
    note: str
    by: str
    at: datetime
    commit: str


class QaIn(Schema):
    state: QaState
    note: str = Field("", max_length=QA_NOTE_CHARS)
    commit: str | None = Field(
        None, description="The commit signed off; 409 when another one is deployed by now."
    )


class LinksOut(Schema):
    self: str
    page: str


class EnvironmentOut(Schema):
    id: int
    project: str
    branch: str
    commit: str
    pull_request: int | None
    pull_request_title: str
    status: EnvironmentStatus
    status_detail: str
    urls: dict[str, str]
    database: DatabaseOut | None
    owner: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    pinned: bool
    queue_position: int | None
    queue_free_by: datetime | None = Field(
        None, description="Queued: when a DB slot frees at the latest (an expiry); in GET of "
        "one environment only."
    )
    runs: list[RunOut] = Field(
        description=f"Newest first: all of them for one environment, the {RUNS_LISTED} newest "
        "in lists."
    )
    smoke: SmokeOut | None = Field(
        description="The last attempt of the newest run that has smoke results."
    )
    qa: QaOut | None = Field(
        description="QA's sign-off of the deployed commit; null once another commit is deployed."
    )
    links: LinksOut


class SlotOut(Schema):
    name: str
    state: SlotState
    environment: int | None
    leased_at: datetime | None
    dataset: str | None = Field(description='The dataset version it holds, "<project> v<n>".')


class PoolOut(Schema):
    size: int = Field(description="Slots in service (not retired).")
    free: int
    restoring: int = Field(description="Getting a project's dataset, in the background.")
    warm: int = Field(description="Free, holding a project's dataset.")
    leased: int
    resetting: int
    retired: int
    slots: list[SlotOut]


class DatasetOut(Schema):
    project: str
    version: int
    size: int = Field(description="Bytes, as uploaded.")
    sha256: str
    compressed: bool
    state: DatasetState = Field(description="restoring (not served yet), ready or broken.")
    error: str = Field(description="The server's error when it broke.")
    uploaded_by: str | None
    uploaded_at: datetime


class PoolSizeIn(Schema):
    size: int = Field(ge=0, le=dbpool.MAX_POOL_SIZE)


class ExtendIn(Schema):
    hours: float = Field(gt=0, le=24 * 365)


ERRORS: dict[int, type[Schema]] = {code: ErrorOut for code in (400, 401, 403, 404, 409, 422)}
ERRORS_UPSTREAM: dict[int, type[Schema]] = {**ERRORS, 502: ErrorOut}


# Serialization.

def component_json(component: Component) -> dict[str, Any]:
    return {
        "name": component.name, "image": component.image, "port": component.port,
        "health_paths": component.health_paths, "exposed": component.exposed,
        "env_names": sorted(component.env_vars),
    }


def project_json(project: Project) -> dict[str, Any]:
    return {
        "name": project.name, "repository": redact.userinfo(project.repository),
        "github_repository": project.github_repository,
        "components": [component_json(c) for c in project.components.all()],
    }


def run_json(run: Run, with_steps: bool) -> dict[str, Any]:
    steps = [
        {"name": s.name, "status": s.status, "started_at": s.started_at,
         "finished_at": s.finished_at}
        for s in run.fetched_steps
    ] if with_steps else None
    return {
        "id": run.pk, "kind": run.kind, "status": run.status, "started_at": run.started_at,
        "finished_at": run.finished_at, "error": run.error, "steps": steps,
    }


def smoke_json(runs: list[Run]) -> dict[str, Any] | None:
    """`runs` newest first, their smoke attempts prefetched (ordered by number)."""
    attempt: SmokeAttempt | None = next(
        (r.fetched_attempts[-1] for r in runs if r.fetched_attempts), None
    )
    if attempt is None:
        return None
    return {
        "status": "passed" if attempt.ok else "failed",
        "passed": attempt.passed,
        "failed": attempt.failed,
        "errors": attempt.errors,
        "report_url": get("storage").url(attempt.report_key) if attempt.report_key else None,
    }


def links_json(environment: Environment) -> dict[str, str]:
    base = settings.PORTAL_BASE_URL
    return {
        "self": base + reverse("api-1:get_environment", kwargs={"id": environment.pk}),
        "page": base + reverse("environment", args=[environment.pk]),
    }


def environment_json(environment: Environment, slot: str | None, queue_position: int | None,
                     detail: bool) -> dict[str, Any]:
    """One environment; `environment` comes from with_details()."""
    runs = environment.fetched_runs
    return {
        "id": environment.pk, "project": environment.project.name,
        "branch": environment.branch, "commit": environment.commit,
        "pull_request": environment.pull_request,
        "pull_request_title": environment.pull_request_title, "status": environment.status,
        "status_detail": environment.status_detail, "urls": environment.urls,
        # public(): the slot, database name and host only, never the password or a DSN.
        "database": get("pool").connection(slot).public() if slot else None,
        "owner": environment.owner.get_username() if environment.owner else None,
        "created_at": environment.created_at, "updated_at": environment.updated_at,
        "expires_at": environment.expires_at, "pinned": environment.pinned,
        "queue_position": queue_position,
        "queue_free_by": dbpool.slot_free_by(queue_position)
        if detail and queue_position else None,
        "runs": [run_json(r, detail) for r in runs], "smoke": smoke_json(runs),
        "qa": environment.qa, "links": links_json(environment),
    }


def with_details(environments: QuerySet[Environment], detail: bool) -> QuerySet[Environment]:
    # to_attr throughout: a sliced prefetch cannot be the related manager's cache, and a
    # manager's cache costs a queryset per row (most of a page's time, for runs' attempts).
    # Deferred: rendered manifests and failure lists run to kilobytes a row, and no JSON shows them.
    attempts = SmokeAttempt.objects.defer("failures", "checks")
    runs = Run.objects.defer("rendered").order_by("-id").prefetch_related(
        Prefetch("smoke_attempts", queryset=attempts, to_attr="fetched_attempts"))
    # Lists stay small and fast however long each history is; one environment shows it all.
    runs = runs.prefetch_related(Prefetch("steps", to_attr="fetched_steps")) if detail \
        else runs[:RUNS_LISTED]
    return environments.select_related("project", "owner").prefetch_related(
        Prefetch("runs", queryset=runs, to_attr="fetched_runs")
    )


def environments_json(environments: QuerySet[Environment], detail: bool = False
                      ) -> list[dict[str, Any]]:
    """A fixed number of queries however many environments there are."""
    found = list(with_details(environments, detail))
    slots = dict(
        DbSlot.objects.filter(environment__in=found).values_list("environment_id", "name")
    )
    queued = any(e.status == EnvironmentStatus.QUEUED for e in found)
    positions = dbpool.queue_positions() if queued else {}
    return [environment_json(e, slots.get(e.pk), positions.get(e.pk), detail) for e in found]


def pool_json() -> dict[str, Any]:
    slots = [_slot_json(row) for row in DbSlot.objects.values(
        "name", "state", "environment", "leased_at", "dataset__project__name", "dataset__number")]
    counts = {state: sum(s["state"] == state for s in slots) for state in SlotState}
    return {
        "size": len(slots) - counts[SlotState.RETIRED],
        **{str(state): count for state, count in counts.items()},
        "slots": slots,
    }


def _slot_json(row: dict[str, Any]) -> dict[str, Any]:
    project, number = row.pop("dataset__project__name"), row.pop("dataset__number")
    return row | {"dataset": f"{project} v{number}" if number else None}


# Lookups that answer 404 in the error shape.

def _project(name: str) -> Project:
    project = Project.objects.filter(name=name).first()
    if project is None:
        raise Refused(f"no project {name!r}", 404, {"project": name})
    return project


def _missing(environment_id: int) -> Refused:
    return Refused(f"no environment {environment_id}", 404, {"id": environment_id})


def _environment(environment_id: int) -> Environment:
    environment = Environment.objects.select_related("project").filter(pk=environment_id).first()
    if environment is None:
        raise _missing(environment_id)
    return environment


def _environment_json(environment_id: int) -> dict[str, Any]:
    found = environments_json(Environment.objects.filter(pk=environment_id), detail=True)
    if not found:
        raise _missing(environment_id)
    return found[0]


def _accepted(environment_id: int) -> Status:
    """202 with the environment as it is now (inline task runners may have finished it)."""
    return Status(202, _environment_json(environment_id))


# Endpoints.

@api.get("/projects", response={200: list[ProjectOut], **ERRORS}, auth=TokenAuth(roles.VIEW))
def list_projects(request: HttpRequest) -> list[dict[str, Any]]:
    return [project_json(p) for p in Project.objects.prefetch_related("components")]


@api.get("/projects/{name}/branches", response={200: list[BranchOut], **ERRORS_UPSTREAM},
         auth=TokenAuth(roles.VIEW))
def list_branches(request: HttpRequest, name: str) -> list[dict[str, str]]:
    """The branches of the project's repository (what can be launched); 502 when it cannot be
    read."""
    return [{"name": b.name, "commit": b.commit} for b in git.branches(_project(name).repository)]


@api.put("/projects/{name}/dataset", response={201: DatasetOut, 413: ErrorOut, **ERRORS_UPSTREAM},
         auth=TokenAuth(roles.MANAGE_PROJECTS))
def upload_dataset(request: HttpRequest, name: str) -> Status:
    """The request's body, an SQL dump (plain or gzip), becomes the project's next dataset
    version; it serves once restored cleanly (state ready; broken with the server's error
    otherwise, the previous version serving on). Over PORTAL_DATASET_MAX_MB: 413, as soon as
    the declared length says so, before the body is read."""
    project = _project(name)
    length = request.headers.get("Content-Length", "")
    content = datasets.read_dump(request, int(length) if length.isdigit() else None)
    version = datasets.upload(project, content, actor=request.auth, interface=Interface.API)
    version.refresh_from_db()  # inline task runners may have restored it already
    return Status(201, dataset_json(version))


def dataset_json(version: DatasetVersion) -> dict[str, Any]:
    return {
        "project": version.project.name, "version": version.number, "size": version.size,
        "sha256": version.sha256, "compressed": version.compressed, "state": version.state,
        "error": version.error, "uploaded_at": version.uploaded_at,
        "uploaded_by": version.uploaded_by.get_username() if version.uploaded_by else None,
    }


@api.post("/environments", response={202: EnvironmentOut, **ERRORS_UPSTREAM},
          auth=TokenAuth(roles.LAUNCH))
def launch_environment(request: HttpRequest, body: LaunchIn) -> Status:
    """Launch a preview of the branch. Idempotent per (project, branch): a live environment is
    redeployed and returned."""
    environment = services.launch(
        _project(body.project), body.branch, actor=request.auth, interface=Interface.API,
        commit=body.commit, pull_request=body.pull_request,
    )
    return _accepted(environment.pk)


@api.get("/environments", response={200: list[EnvironmentOut], **ERRORS},
         auth=TokenAuth(roles.VIEW))
def list_environments(request: HttpRequest, response: HttpResponse, project: str | None = None,
                      status: EnvironmentStatus | None = None, branch: str | None = None,
                      page: int = Query(1, ge=1),
                      per_page: int = Query(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
                      ) -> list[dict[str, Any]]:
    """Active environments (everything not torn down), or those with `status`, newest first,
    `per_page` at a time. The `Link` header names the next and previous pages (rel="next",
    rel="prev"); `X-Total-Count` counts the environments on all pages."""
    found = Environment.objects.filter(status=status) if status else Environment.objects.active()
    if project is not None:
        found = found.filter(project__name=project)
    if branch is not None:
        found = found.filter(branch=branch)
    total = found.count()
    response["X-Total-Count"] = str(total)
    links = _page_links(request, page, per_page, total)
    if links:
        response["Link"] = links
    start = (page - 1) * per_page
    newest_first = ("-created_at", "-id")
    # The page's ids first: sorting bare ids is cheap, sorting every joined row is not.
    ids = list(found.order_by(*newest_first).values_list("id", flat=True)[start:start + per_page])
    return environments_json(Environment.objects.filter(pk__in=ids).order_by(*newest_first))


def _page_links(request: HttpRequest, page: int, per_page: int, total: int) -> str:
    """RFC 8288 links to the neighbouring pages, absolute on PORTAL_BASE_URL, keeping the
    filters."""
    pages = {"prev": page - 1 if page > 1 else None,
             "next": page + 1 if page * per_page < total else None}
    query = request.GET.copy()
    base = settings.PORTAL_BASE_URL + reverse("api-1:list_environments")
    links = []
    for rel, number in pages.items():
        if number is not None:
            query["page"] = str(number)
            links.append(f'<{base}?{query.urlencode()}>; rel="{rel}"')
    return ", ".join(links)


@api.get("/environments/{id}", response={200: EnvironmentOut, **ERRORS},
         auth=TokenAuth(roles.VIEW))
def get_environment(request: HttpRequest, id: int) -> dict[str, Any]:
    return _environment_json(id)


@api.post("/environments/{id}/redeploy", response={202: EnvironmentOut, **ERRORS_UPSTREAM},
          auth=TokenAuth(roles.REDEPLOY))
def redeploy_environment(request: HttpRequest, id: int) -> Status:
    """Deploy the branch head again; 409 while it is being torn down."""
    services.redeploy(_environment(id), actor=request.auth, interface=Interface.API)
    return _accepted(id)


@api.post("/environments/{id}/smoke", response={202: EnvironmentOut, **ERRORS},
          auth=TokenAuth(roles.SMOKE))
def rerun_smoke(request: HttpRequest, id: int) -> Status:
    """Run the smoke checks again; 409 unless the environment is ready or degraded."""
    services.rerun_smoke(_environment(id), actor=request.auth, interface=Interface.API)
    return _accepted(id)


@api.post("/environments/{id}/extend", response={200: EnvironmentOut, **ERRORS},
          auth=TokenAuth(roles.EXTEND))
def extend_environment(request: HttpRequest, id: int, body: ExtendIn) -> dict[str, Any]:
    """Push expiry `hours` further, up to PORTAL_ENV_MAX_TTL_HOURS from now; the owner or an
    admin only."""
    services.extend(_environment(id), actor=request.auth, interface=Interface.API,
                    hours=body.hours)
    return _environment_json(id)


@api.post("/environments/{id}/qa", response={200: EnvironmentOut, **ERRORS},
          auth=SignOffAuth())
def sign_off_environment(request: HttpRequest, id: int, body: QaIn) -> dict[str, Any]:
    """QA's verdict on the deployed commit (QA, admin): shown until another commit is deployed,
    told to the Slack thread and, for a pull request, GitHub as commit status `preview/qa`."""
    services.qa_signoff(_environment(id), body.state, body.note, actor=request.auth,
                        interface=Interface.API, commit=body.commit)
    return _environment_json(id)


@api.delete("/environments/{id}", response={202: EnvironmentOut, **ERRORS},
            auth=TokenAuth(roles.TEARDOWN))
def teardown_environment(request: HttpRequest, id: int) -> Status:
    """Tear the environment down; 409 when it already is."""
    services.teardown(_environment(id), actor=request.auth, interface=Interface.API)
    return _accepted(id)


@api.get("/pool", response={200: PoolOut, **ERRORS}, auth=TokenAuth(roles.VIEW))
def get_pool(request: HttpRequest) -> dict[str, Any]:
    return pool_json()


@api.put("/pool", response={200: PoolOut, **ERRORS_UPSTREAM}, auth=TokenAuth(roles.MANAGE_POOL))
def resize_pool(request: HttpRequest, body: PoolSizeIn) -> dict[str, Any]:
    """Resize the DB pool to `size` slots (admin). Growing creates databases and users (adopting
    existing ones); shrinking retires free slots only, and a size below the leased slots is
    refused with 409 and nothing changes. Re-running an interrupted resize finishes it."""
    dbpool.resize_pool(body.size, actor=request.auth, interface=Interface.API)
    return pool_json()


# Last, so it only sees what no endpoint above matched: scripts get JSON here too.
@api.api_operation(["GET", "POST", "PUT", "PATCH", "DELETE"], "/{path:rest}", auth=None,
                   include_in_schema=False)
def unknown_endpoint(request: HttpRequest, rest: str) -> None:
    raise Refused(
        f"no API endpoint {request.method} {request.path} (paths have no trailing slash)", 404,
        {"docs": settings.PORTAL_BASE_URL + reverse("api-1:openapi-view")},
    )
