"""Admin: projects are edited here; what the pipeline owns is shown read-mostly, because a
hand edit of an environment, run or audit event would contradict what actually ran."""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from environments import crypto, datasets, roles
from environments.models import (
    ApiToken,
    AuditEvent,
    Component,
    DatasetVersion,
    DbSlot,
    Environment,
    Interface,
    Project,
    Run,
    RunStep,
    SsoIdentity,
    UserQuota,
    WebhookDelivery,
)


class AdminRoleEdits:
    """Only the portal's admin role adds, changes or deletes these, whatever Django permissions
    a staff account was given: a component's start_command runs as a shell on the worker."""

    def _admin_role(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return roles.can(request.user, roles.MANAGE_PROJECTS)

    has_add_permission = has_change_permission = has_delete_permission = _admin_role


class ComponentInline(AdminRoleEdits, admin.TabularInline):
    model = Component
    extra = 0
    fields = ("position", "name", "image", "port", "health_paths", "env_vars", "start_command",
              "exposed")


class ProjectForm(forms.ModelForm):
    """The webhook secret is write-only: typed here, stored sealed, never shown again."""

    new_webhook_secret = forms.CharField(
        required=False, label="Webhook secret", widget=forms.PasswordInput,
        help_text="Replaces the project's own secret for GitHub webhooks; empty keeps it "
        "(without one, PORTAL_GITHUB_WEBHOOK_SECRET applies).",
    )
    clear_webhook_secret = forms.BooleanField(
        required=False, help_text="Back to PORTAL_GITHUB_WEBHOOK_SECRET."
    )
    # Optional in the form: a form of before datasets (or a script's) keeps none warm.
    warm_slots = forms.IntegerField(
        required=False, min_value=0,
        help_text=Project._meta.get_field("warm_slots").help_text)

    class Meta:
        model = Project
        fields = ("name", "repository", "github_repository", "seed_sql", "ttl_hours",
                  "max_live_environments", "deploy_drafts", "deploy_forks", "smoke",
                  "base_manifests", "warm_slots")

    def clean_warm_slots(self) -> int:
        return self.cleaned_data["warm_slots"] or 0

    def save(self, commit: bool = True) -> Project:
        project = super().save(commit=False)
        if self.cleaned_data["clear_webhook_secret"]:
            project.webhook_secret = ""
        elif self.cleaned_data["new_webhook_secret"]:
            project.webhook_secret = crypto.seal(self.cleaned_data["new_webhook_secret"])
        if commit:
            project.save()
            self.save_m2m()
        return project


@admin.register(Project)
class ProjectAdmin(AdminRoleEdits, admin.ModelAdmin):
    form = ProjectForm
    list_display = ("name", "repository", "github_repository", "own_webhook_secret",
                    "ttl_hours")
    search_fields = ("name", "github_repository")
    inlines = [ComponentInline]
    fields = ("name", "repository", "github_repository", "seed_sql", "ttl_hours",
              "max_live_environments", "deploy_drafts", "deploy_forks", "new_webhook_secret",
              "clear_webhook_secret", "smoke", "base_manifests", "warm_slots")

    @admin.display(boolean=True)
    def own_webhook_secret(self, project: Project) -> bool:
        return bool(project.webhook_secret)

    def has_module_permission(self, request: HttpRequest) -> bool:
        # Listed on the admin's index for an admin without Django permissions too.
        return super().has_module_permission(request) or self._admin_role(request)

    def save_model(self, request: HttpRequest, obj: Project, form: forms.ModelForm,
                   change: bool) -> None:
        super().save_model(request, obj, form, change)
        datasets.warm()  # more warm slots asked for: start now, not at the next pass


class DatasetUploadForm(forms.ModelForm):
    dump = forms.FileField(help_text="An SQL dump, plain or gzip. It becomes the project's next "
                           "version and serves once it restores cleanly.")

    class Meta:
        model = DatasetVersion
        fields = ("project",)

    def clean_dump(self) -> bytes:
        dump = self.cleaned_data["dump"]
        if dump.size > datasets.max_bytes():
            raise forms.ValidationError(
                f"Larger than PORTAL_DATASET_MAX_MB ({settings.PORTAL_DATASET_MAX_MB:g} MB).")
        content = dump.read()
        if not content.strip():
            raise forms.ValidationError("The file is empty.")
        return content


@admin.register(DatasetVersion)
class DatasetVersionAdmin(AdminRoleEdits, admin.ModelAdmin):
    """Added by uploading a dump; a version is then only read (slots may hold it)."""

    list_display = ("__str__", "state", "size", "sha256", "uploaded_by", "uploaded_at",
                    "restore_seconds", "error")
    list_filter = ("project", "state")
    list_select_related = ("project", "uploaded_by")
    shown = ("project", "number", "state", "error", "size", "sha256", "compressed", "key",
             "uploaded_by", "uploaded_at", "restore_seconds")

    def get_form(self, request: HttpRequest, obj: DatasetVersion | None = None,
                 change: bool = False, **kwargs: object) -> type[forms.ModelForm]:
        if obj is None:
            kwargs["form"] = DatasetUploadForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: DatasetVersion | None = None) -> tuple:
        return self.shown if obj else ("project", "dump")

    def get_readonly_fields(self, request: HttpRequest,
                            obj: DatasetVersion | None = None) -> tuple:
        return self.shown if obj else ()

    def save_model(self, request: HttpRequest, obj: DatasetVersion, form: forms.ModelForm,
                   change: bool) -> None:
        version = datasets.upload(form.cleaned_data["project"], form.cleaned_data["dump"],
                                  actor=request.user, interface=Interface.WEB)
        for field in DatasetVersion._meta.concrete_fields:
            setattr(obj, field.attname, getattr(version, field.attname))

    def has_delete_permission(self, request: HttpRequest,
                              obj: DatasetVersion | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest,
                            obj: DatasetVersion | None = None) -> bool:
        return super().has_view_permission(request, obj) or self._admin_role(request)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or self._admin_role(request)


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "status", "owner", "created_at", "expires_at")
    list_filter = ("status", "project")
    search_fields = ("branch", "env_key")
    list_select_related = ("project", "owner")
    # Only the lifetime is an admin's to change; state changes go through the pipeline.
    readonly_fields = ("project", "branch", "commit", "pull_request", "owner", "status",
                       "status_detail", "env_key", "urls", "created_at", "updated_at",
                       "queued_at", "ready_at", "github_comment_id", "relaunch")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Environment | None = None) -> bool:
        return False  # A teardown frees what it holds; a deleted row would leak it.


class RunStepInline(admin.TabularInline):
    model = RunStep
    extra = 0
    fields = ("position", "name", "status", "started_at", "finished_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "environment", "status", "requested_by", "started_at",
                    "finished_at")
    list_filter = ("kind", "status")
    list_select_related = ("environment__project", "requested_by")
    readonly_fields = ("environment", "kind", "status", "commit", "requested_by", "error",
                       "cancel_requested", "rendered", "notify_ref", "claimed_by",
                       "claim_expires_at", "created_at", "started_at", "finished_at")
    inlines = [RunStepInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(DbSlot)
class DbSlotAdmin(admin.ModelAdmin):
    list_display = ("name", "state", "environment", "leased_at", "last_reset_at", "error")
    list_filter = ("state",)
    list_select_related = ("environment__project",)
    # Leases and resets belong to the pipeline; the pool is resized with `manage.py pool`.
    # The sealed password (`secret`) is left out on purpose.
    fields = ("name", "state", "environment", "leased_at", "last_reset_at", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_name", "interface", "action", "environment")
    list_filter = ("interface", "action")
    search_fields = ("actor_name", "action")
    list_select_related = ("environment__project",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    # The digest stays hidden; a token is made on the API tokens page (or with create_api_token)
    # and shown once.
    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "expires_at")
    fields = ("prefix", "user", "name", "created_at", "last_used_at", "expires_at")
    readonly_fields = ("prefix", "user", "created_at", "last_used_at")
    list_select_related = ("user",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("received_at", "event", "action", "repository", "pull_request",
                    "delivery_id")
    list_filter = ("event", "action")
    search_fields = ("delivery_id", "repository")
    readonly_fields = ("delivery_id", "event", "action", "repository", "pull_request",
                       "received_at", "result")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest,
                              obj: WebhookDelivery | None = None) -> bool:
        return False


@admin.register(UserQuota)
class UserQuotaAdmin(admin.ModelAdmin):
    """Live environments a user may own, instead of PORTAL_QUOTA_PER_USER."""

    list_display = ("user", "max_live_environments")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)


@admin.register(SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin):
    """Where the roles of a person who signs in through the identity provider came from. Set at
    each of their sign-ins, so read-only here: change their groups at the provider."""

    list_display = ("user", "role_sources", "groups_list", "synced_at", "subject")
    list_select_related = ("user",)
    search_fields = ("user__username", "subject")
    fields = ("user", "issuer", "subject", "role_sources", "groups_list", "synced_at")
    readonly_fields = fields

    @admin.display(description="roles (from the provider groups)")
    def role_sources(self, identity: SsoIdentity) -> str:
        return "; ".join(f"{role} ← {', '.join(groups)}"
                         for role, groups in sorted(identity.roles.items())) or "none"

    @admin.display(description="provider groups at the last sign-in")
    def groups_list(self, identity: SsoIdentity) -> str:
        return ", ".join(identity.groups) or "none"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest,
                              obj: SsoIdentity | None = None) -> bool:
        return False

    # The portal's admins read it without Django permissions, as they edit projects.
    def has_view_permission(self, request: HttpRequest, obj: SsoIdentity | None = None) -> bool:
        return roles.ADMIN in roles.roles_of(request.user) or super().has_view_permission(
            request, obj)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return roles.ADMIN in roles.roles_of(request.user) or super().has_module_permission(
            request)
