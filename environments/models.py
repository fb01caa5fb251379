"""What the portal knows: projects, environments, their runs and steps, DB slots, the audit log."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from environments import naming
from environments.smoke.config import validate_smoke_config

dns_label = RegexValidator(
    r"^[a-z0-9]([a-z0-9-]{0,28}[a-z0-9])?$",
    "Use 1-30 lower-case letters, digits and inner hyphens (it becomes part of a DNS name).",
)
# A component's name starts the names of its Kubernetes objects, and a Service's name must be a
# DNS-1035 label: a letter first.
component_name = RegexValidator(
    r"^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$",
    "Use 1-30 lower-case letters, digits and inner hyphens, starting with a letter (it names "
    "the component's Kubernetes Service, and a Service's name may not start with a digit).",
)


class Project(models.Model):
    name = models.CharField(max_length=30, unique=True, validators=[dns_label])
    repository = models.CharField(
        max_length=500, help_text="Git URL or path the branches are read from."
    )
    github_repository = models.CharField(
        max_length=200, blank=True, help_text="owner/name, what GitHub webhooks are matched on."
    )
    seed_sql = models.CharField(
        max_length=300, blank=True,
        help_text="Path of an SQL file in the repository run in each new DB slot it leases.",
    )
    ttl_hours = models.FloatField(
        null=True, blank=True, help_text="Lifetime of an environment; empty: portal default."
    )
    max_live_environments = models.PositiveIntegerField(
        null=True, blank=True, help_text="Live environments the project may have; empty: no limit."
    )
    webhook_secret = models.TextField(
        blank=True,
        help_text="Sealed. When set, GitHub deliveries for this repository must be signed with "
        "it instead of PORTAL_GITHUB_WEBHOOK_SECRET.",
    )
    deploy_drafts = models.BooleanField(
        default=False, help_text="Draft pull requests get an environment too."
    )
    deploy_forks = models.BooleanField(
        default=False,
        help_text="Pull requests from forks get an environment: their code then runs with this "
        "project's database and settings.",
    )
    smoke = models.JSONField(
        default=dict, blank=True, validators=[validate_smoke_config],
        help_text="Smoke checks after each deploy: lists of requests under login, database, "
        "integrations, components; tests: a path of pytest files in the repository "
        "(README, 'Smoke checks').",
    )
    base_manifests = models.TextField(
        blank=True,
        help_text="Kubernetes runtime: the project's own manifests (YAML documents). Each "
        "environment gets them with its name suffix, labels, namespace, image, env and hosts.",
    )
    warm_slots = models.PositiveIntegerField(
        default=0,
        help_text="Free DB slots kept restored with the project's current dataset, so a launch "
        "gets its data with no restore.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Component(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="components")
    name = models.CharField(max_length=30, validators=[component_name])
    image = models.CharField(
        max_length=300, blank=True,
        help_text="Kubernetes runtime: image reference; {commit}, {branch_slug} and {env_key} "
        "are filled in, e.g. ghcr.io/acme/web:{commit}.",
    )
    port = models.PositiveIntegerField(default=8000)
    health_paths = models.JSONField(default=list, blank=True)
    env_vars = models.JSONField(default=dict, blank=True)
    start_command = models.CharField(
        max_length=500, blank=True, help_text="Local runtime: shell command run in the worktree."
    )
    exposed = models.BooleanField(default=True, help_text="Gets a URL of its own.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="component_name_per_project")
        ]

    def __str__(self) -> str:
        return f"{self.project.name}/{self.name}"


class EnvironmentStatus(models.TextChoices):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    VERIFYING = "verifying"
    READY = "ready"
    DEGRADED = "degraded"
    FAILED = "failed"
    TEARING_DOWN = "tearing_down"
    TORN_DOWN = "torn_down"


# Work is under way: pages poll while an environment is in one of these.
IN_PROGRESS = frozenset(
    {
        EnvironmentStatus.QUEUED,
        EnvironmentStatus.PROVISIONING,
        EnvironmentStatus.VERIFYING,
        EnvironmentStatus.TEARING_DOWN,
    }
)
TERMINAL = frozenset({EnvironmentStatus.TORN_DOWN})
# Holds (or may hold) resources: everything that is not torn down.
ACTIVE = frozenset(EnvironmentStatus) - TERMINAL


class QaState(models.TextChoices):
    APPROVED = "approved", "approved"
    CHANGES_REQUESTED = "changes_requested", "changes requested"


QA_NOTE_CHARS = 2000
# GitHub's own limit on a pull request's title.
PULL_REQUEST_TITLE_CHARS = 256
# QA signed off the commit now deployed: a sign-off of an earlier commit no longer holds.
QA_CURRENT = Q(qa_commit=F("commit")) & ~Q(qa_state="")


class EnvironmentQuerySet(models.QuerySet["Environment"]):
    def active(self) -> EnvironmentQuerySet:
        return self.exclude(status__in=TERMINAL)

    def qa_signed(self, state: str) -> EnvironmentQuerySet:
        """With QA's `state` on the deployed commit; `state` "none": without a sign-off of it."""
        if state == "none":
            return self.exclude(QA_CURRENT)
        return self.filter(QA_CURRENT, qa_state=state)

    def in_progress(self) -> EnvironmentQuerySet:
        return self.filter(status__in=IN_PROGRESS)

    def expired(self, now: datetime) -> EnvironmentQuerySet:
        return self.active().filter(expires_at__lte=now, pinned=False)

    def queued_oldest_first(self) -> EnvironmentQuerySet:
        return self.filter(status=EnvironmentStatus.QUEUED).order_by("queued_at", "id")


class Environment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="environments")
    branch = models.CharField(max_length=255)
    commit = models.CharField(max_length=40, blank=True)
    pull_request = models.PositiveIntegerField(null=True, blank=True)
    pull_request_title = models.CharField(
        max_length=PULL_REQUEST_TITLE_CHARS, blank=True,
        help_text="As the last pull_request delivery gave it.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    status = models.CharField(
        max_length=20, choices=EnvironmentStatus.choices, default=EnvironmentStatus.QUEUED
    )
    status_detail = models.TextField(blank=True, help_text="Why it is failed or degraded.")
    env_key = models.CharField(
        max_length=32, db_index=True,
        help_text="Names its hosts, runtime objects and directories; kept for its lifetime. "
                  'md5 of "<project>/<branch>" (of the branch alone when created before that '
                  "rule).",
    )
    urls = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    pinned = models.BooleanField(default=False, help_text="Never expires (set by an admin).")
    warned_at = models.DateTimeField(null=True, blank=True)
    github_comment_id = models.BigIntegerField(
        null=True, blank=True, help_text="The pull-request comment each run edits."
    )
    relaunch = models.JSONField(
        null=True, blank=True,
        help_text="A launch asked for during the teardown, carried out once it is gone.",
    )
    qa_state = models.CharField(
        max_length=20, choices=QaState.choices, blank=True,
        help_text="QA's sign-off of qa_commit; it holds while that commit is the one deployed.",
    )
    qa_note = models.CharField(max_length=QA_NOTE_CHARS, blank=True)
    qa_by = models.CharField(max_length=150, blank=True, help_text="Who signed off.")
    qa_at = models.DateTimeField(null=True, blank=True)
    qa_commit = models.CharField(max_length=40, blank=True)

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "branch"],
                condition=~Q(status=EnvironmentStatus.TORN_DOWN),
                name="one_live_environment_per_branch",
            ),
            # The key names hosts and runtime objects: two live environments sharing one would
            # overwrite each other. New keys never collide, but a key kept from the old rule,
            # md5("shop/main") for branch "shop/main", is the new key of main in project shop.
            models.UniqueConstraint(
                fields=["env_key"],
                condition=~Q(status=EnvironmentStatus.TORN_DOWN),
                name="one_live_environment_per_env_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.name}:{self.branch}"

    @property
    def in_progress(self) -> bool:
        return self.status in IN_PROGRESS

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def slot(self) -> DbSlot | None:
        return DbSlot.objects.filter(environment=self).first()

    @property
    def qa(self) -> dict[str, Any] | None:
        """QA's sign-off of the deployed commit (DESIGN.md's `qa`); None once another commit
        is deployed."""
        if not self.qa_state or self.qa_commit != self.commit:
            return None
        return {"state": self.qa_state, "note": self.qa_note, "by": self.qa_by,
                "at": self.qa_at, "commit": self.qa_commit}

    def latest_run(self) -> Run | None:
        return self.runs.order_by("-id").first()

    def host(self, component: str) -> str:
        return naming.host(self.env_key, self.branch, component, settings.PORTAL_NAMING,
                           settings.PORTAL_BASE_DOMAIN)


class RunKind(models.TextChoices):
    DEPLOY = "deploy"
    REDEPLOY = "redeploy"
    TEARDOWN = "teardown"
    SMOKE = "smoke"


class RunStatus(models.TextChoices):
    PENDING = "pending"
    WAITING = "waiting"  # for a DB slot
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The ordered steps of each kind of run (DESIGN.md, "The deploy pipeline").
_DEPLOY_STEPS = ("lease_db", "render", "apply", "rollout", "dns", "smoke", "report", "notify")
STEPS_BY_KIND: dict[str, tuple[str, ...]] = {
    RunKind.DEPLOY: _DEPLOY_STEPS,
    RunKind.REDEPLOY: _DEPLOY_STEPS,
    RunKind.TEARDOWN: ("delete_workload", "delete_dns", "release_db", "notify"),
    RunKind.SMOKE: ("smoke", "report", "notify"),
}

RUN_OPEN = frozenset({RunStatus.PENDING, RunStatus.WAITING, RunStatus.RUNNING})
RUN_CLOSED = frozenset(RunStatus) - RUN_OPEN


class RunQuerySet(models.QuerySet["Run"]):
    def open(self) -> RunQuerySet:
        return self.filter(status__in=RUN_OPEN)


class Run(models.Model):
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="runs")
    kind = models.CharField(max_length=20, choices=RunKind.choices)
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.PENDING)
    commit = models.CharField(max_length=40, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    approved_by = models.CharField(
        max_length=100, blank=True,
        help_text="A fork's commit deploys only on approval (`/preview deploy`): the GitHub login "
        "of the maintainer who approved this run's commit.",
    )
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    rendered = models.TextField(blank=True, help_text="What the runtime was asked to apply.")
    notify_ref = models.CharField(max_length=100, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"

    @property
    def is_open(self) -> bool:
        return self.status in RUN_OPEN

    @property
    def duration(self) -> float | None:
        if not self.started_at:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()


class StepStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class RunStep(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=50)
    status = models.CharField(
        max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="one_step_per_position")
        ]

    def __str__(self) -> str:
        return f"{self.run} {self.position}:{self.name}"

    @property
    def duration(self) -> float | None:
        if not self.started_at or not self.finished_at:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class LogLine(models.Model):
    step = models.ForeignKey(RunStep, on_delete=models.CASCADE, related_name="lines")
    at = models.DateTimeField(default=timezone.now)
    text = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.text[:80]


class SmokeAttempt(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="smoke_attempts")
    number = models.PositiveIntegerField()
    passed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Tests that could not run.")
    failures = models.JSONField(default=list, blank=True)
    checks = models.JSONField(default=list, blank=True)
    report_key = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="one_attempt_per_number")
        ]

    def __str__(self) -> str:
        return f"{self.run} attempt {self.number}"

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0


class DatasetState(models.TextChoices):
    RESTORING = "restoring"  # into its template: not served yet
    READY = "ready"
    BROKEN = "broken"


class DatasetVersion(models.Model):
    """One upload of a project's SQL dump (plain or gzip), kept in report storage. The newest
    ready version is the one slots are restored with; a broken one is never served."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE,
                                related_name="dataset_versions")
    number = models.PositiveIntegerField()
    key = models.CharField(max_length=300, help_text="Where the dump is in report storage.")
    size = models.PositiveBigIntegerField(help_text="Bytes, as uploaded.")
    sha256 = models.CharField(max_length=64)
    compressed = models.BooleanField(default=False)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    uploaded_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=20, choices=DatasetState.choices,
                             default=DatasetState.RESTORING)
    error = models.TextField(blank=True, help_text="What the server said when it broke.")
    template_secret = models.TextField(blank=True, help_text="Its template's password, sealed.")
    restore_seconds = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["project", "number"], name="one_dataset_number")
        ]

    def __str__(self) -> str:
        return f"{self.project.name} v{self.number}"


class SlotState(models.TextChoices):
    FREE = "free"  # empty
    RESTORING = "restoring"  # getting a project's dataset in the background
    WARM = "warm"  # free, holding `dataset`
    LEASED = "leased"
    RESETTING = "resetting"
    RETIRED = "retired"


# A lease may take these; a warm slot of another dataset is emptied first.
LEASABLE = (SlotState.WARM, SlotState.FREE)


class DbSlot(models.Model):
    name = models.CharField(max_length=64, unique=True)
    state = models.CharField(max_length=20, choices=SlotState.choices, default=SlotState.FREE)
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    leased_at = models.DateTimeField(null=True, blank=True)
    last_reset_at = models.DateTimeField(null=True, blank=True)
    secret = models.TextField(blank=True, help_text="The slot user's password, sealed.")
    seeded = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    resetting_since = models.DateTimeField(
        null=True, blank=True,
        help_text="When the reset was last asked for: the reconciler asks again for one lost.",
    )
    dataset = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The dataset version restored in it (kept while leased).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(environment__isnull=False),
                name="one_slot_per_environment",
            ),
            models.CheckConstraint(
                condition=Q(state=SlotState.LEASED, environment__isnull=False)
                | (~Q(state=SlotState.LEASED) & Q(environment__isnull=True)),
                name="one_lease_per_slot",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Interface(models.TextChoices):
    WEB = "web"
    API = "api"
    CLI = "cli"
    WEBHOOK = "webhook"
    SYSTEM = "system"


class AuditEvent(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    actor_name = models.CharField(max_length=150, blank=True)
    interface = models.CharField(max_length=20, choices=Interface.choices)
    action = models.CharField(max_length=50)
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action}"


class ReconcilePass(models.Model):
    """One comparison of what the portal believes with what exists (environments.reconciler)."""

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    interface = models.CharField(max_length=20, choices=Interface.choices)
    findings = models.JSONField(
        default=list, blank=True, help_text="[{kind, subject, action}], in the order found."
    )

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"reconcile pass {self.started_at:%Y-%m-%d %H:%M}: {len(self.findings)} findings"


class UserQuota(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="portal_quota"
    )
    max_live_environments = models.PositiveIntegerField(
        help_text="Live environments this user may own (overrides PORTAL_QUOTA_PER_USER)."
    )

    def __str__(self) -> str:
        return f"{self.user}: {self.max_live_environments}"


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Refused from then on; empty: never expires."
    )

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @staticmethod
    def digest_of(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()


class SsoIdentity(models.Model):
    """The person an OpenID Connect provider vouches for (issuer + subject, never an e-mail
    address a provider may let people change), and where their roles came from: at every
    sign-in the portal's role groups are set to what their provider groups map to."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=255)
    groups = models.JSONField(
        default=list, blank=True, help_text="The provider's groups at the last sign-in."
    )
    roles = models.JSONField(
        default=dict, blank=True,
        help_text='{role: [provider groups granting it]} at the last sign-in, through '
                  "PORTAL_OIDC_ROLE_MAP.",
    )
    synced_at = models.DateTimeField(help_text="The last sign-in, when the roles were set.")

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="one_user_per_subject")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.subject} at {self.issuer})"


class WebhookDelivery(models.Model):
    """A GitHub delivery that was verified and handled: a redelivery of it changes nothing."""

    delivery_id = models.CharField(max_length=100)
    # sha256 of the signed body: a captured delivery sent again under a new id is the same body.
    # Null for deliveries recorded before it was kept (nulls never collide in a unique column).
    digest = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    event = models.CharField(max_length=50)
    action = models.CharField(max_length=50, blank=True)
    repository = models.CharField(max_length=200, blank=True, help_text="owner/name, lower case.")
    pull_request = models.PositiveIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["delivery_id"], name="one_row_per_delivery"),
            models.UniqueConstraint(fields=["digest"], name="one_row_per_delivery_body"),
        ]
        indexes = [models.Index(fields=["repository", "pull_request"]),
                   models.Index(fields=["received_at"], name="delivery_received_at")]

    def __str__(self) -> str:
        return f"{self.event} {self.action} {self.delivery_id}"
