"""Expiry (warning, teardown, extend, pin) and quotas on live environments."""

import hashlib
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from environments import naming, services, tasks, tokens
from environments.backends import get
from environments.models import (
    AuditEvent,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    SlotState,
    UserQuota,
)
from environments.refused import Refused
from tests.support.users import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def launched(project, branch: str, user: User) -> Environment:
    environment = services.launch(project, branch, actor=user, interface=Interface.WEB)
    environment.refresh_from_db()
    return environment


def test_an_expired_environment_is_warned_then_torn_down_by_the_schedule(
        demo_project, pool_of, developer, settings, monkeypatch, client):
    pool_of(1)
    demo_project.ttl_hours = 1  # inside the warning window from the start, however slow the launch
    demo_project.save()
    settings.PORTAL_EXPIRY_WARNING_HOURS = 2
    sent = []  # (after the settings change: it gives backends anew)
    monkeypatch.setattr(get("notify"), "send", lambda notice, ref="": sent.append(notice) or "x")
    environment = launched(demo_project, "main", developer)
    client.force_login(developer)

    tasks.expire_environments()  # inside the warning window, not yet expired
    environment.refresh_from_db()
    page = client.get(f"/environments/{environment.pk}").content.decode()
    assert environment.status == EnvironmentStatus.READY
    assert environment.warned_at is not None
    assert [(n.kind, n.branch) for n in sent if n.kind == "expiry_warning"] == [
        ("expiry_warning", "main")]
    assert "This environment expires in" in page

    Environment.objects.filter(pk=environment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1))
    tasks.expire_environments()
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.TORN_DOWN
    assert DbSlot.objects.get().state == SlotState.FREE
    assert AuditEvent.objects.filter(action="teardown", interface=Interface.SYSTEM).exists()


def test_a_pinned_environment_does_not_expire(demo_project, pool_of, developer, admin):
    pool_of(1)
    environment = launched(demo_project, "main", developer)
    services.set_pinned(environment, True, actor=admin, interface=Interface.WEB)
    Environment.objects.filter(pk=environment.pk).update(expires_at=timezone.now())

    tasks.expire_environments()
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.READY


def test_the_owner_extends_up_to_the_cap_and_others_may_not(
        demo_project, pool_of, developer, admin, settings, client):
    pool_of(1)
    settings.PORTAL_ENV_MAX_TTL_HOURS = 100
    environment = launched(demo_project, "main", developer)
    colleague = make_user("colleague", "developer")
    before = environment.expires_at

    client.force_login(developer)
    client.post(f"/environments/{environment.pk}/extend", {"hours": "24"})
    environment.refresh_from_db()
    assert environment.expires_at - before == pytest.approx(timedelta(hours=24),
                                                            abs=timedelta(seconds=5))

    client.force_login(colleague)
    refused = client.post(f"/environments/{environment.pk}/extend", {"hours": "24"},
                          follow=True)
    assert "only the environment&#x27;s owner or an admin" in refused.content.decode()

    services.extend(environment, actor=admin, interface=Interface.WEB, hours=1000)
    environment.refresh_from_db()
    assert environment.expires_at - timezone.now() <= timedelta(hours=100)


def test_a_redeploy_counts_as_activity_and_extends(demo_project, pool_of, developer):
    pool_of(1)
    environment = launched(demo_project, "main", developer)
    Environment.objects.filter(pk=environment.pk).update(
        expires_at=timezone.now() + timedelta(minutes=5))

    services.redeploy(environment, actor=developer, interface=Interface.API)
    environment.refresh_from_db()

    assert environment.expires_at - timezone.now() > timedelta(hours=70)


def test_over_the_user_quota_the_api_names_the_limit_and_the_live_environments(
        demo_project, pool_of, developer, client):
    pool_of(3)
    UserQuota.objects.create(user=developer, max_live_environments=1)
    first = launched(demo_project, "main", developer)
    token = tokens.create(developer)

    answer = client.post("/api/v1/environments",
                         {"project": "demo", "branch": "feature/checkout"},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    again = client.post("/api/v1/environments", {"project": "demo", "branch": "main"},
                        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert answer.status_code == 409
    assert answer.json()["detail"] == {"limit": 1, "live": [f"demo:main (#{first.pk})"]}
    assert "your limit is 1" in answer.json()["error"]
    assert again.status_code == 202  # redeploying a live branch is not a new environment
    assert Environment.objects.count() == 1


def test_the_launch_page_says_so_before_the_click(demo_project, pool_of, developer, client,
                                                  settings):
    pool_of(2)
    settings.PORTAL_QUOTA_PER_USER = 1
    launched(demo_project, "main", developer)
    client.force_login(developer)

    page = client.get("/launch").content.decode()

    assert "A new preview would be refused: you have 1 live environments" in page


def test_a_project_limit_applies_to_everyone(demo_project, pool_of, developer, admin):
    pool_of(2)
    demo_project.max_live_environments = 1
    demo_project.save()
    launched(demo_project, "main", developer)

    with pytest.raises(Refused) as refused:
        services.launch(demo_project, "feature/checkout", actor=admin, interface=Interface.API)

    assert "project demo has 1 live environments, its limit is 1" in str(refused.value)


def test_the_same_branch_launches_in_another_project_under_its_own_key(
        demo_project, pool_of, developer, client):
    pool_of(2)
    first = launched(demo_project, "main", developer)
    shop = Project.objects.create(name="shop", repository=demo_project.repository)
    token = tokens.create(developer)

    answer = client.post("/api/v1/environments", {"project": "shop", "branch": "main"},
                         content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert answer.status_code == 202, answer.content
    second = Environment.objects.get(pk=answer.json()["id"])
    assert (second.project, second.branch) == (shop, "main")
    assert second.env_key == naming.env_key("shop", "main") != first.env_key
    first.refresh_from_db()
    assert first.status == EnvironmentStatus.READY and first.project == demo_project


def legacy_holder_of_shop_main(project: Project) -> Environment:
    """Branch "shop/main", live since before the key rule changed: its key, md5 of the branch
    alone, is the key `main` of a project named shop gets now."""
    return Environment.objects.create(
        project=project, branch="shop/main", status=EnvironmentStatus.READY,
        env_key=hashlib.md5(b"shop/main").hexdigest())


def test_a_key_kept_from_the_old_rule_that_a_launch_would_get_is_refused_naming_its_holder(
        demo_project, developer):
    holder = legacy_holder_of_shop_main(demo_project)
    shop = Project.objects.create(name="shop", repository=demo_project.repository)

    with pytest.raises(Refused) as refused:
        services.launch(shop, "main", actor=developer, interface=Interface.API)

    assert refused.value.status == 409
    assert "held by demo:shop/main" in str(refused.value)
    assert refused.value.detail["environment"] == holder.pk
    assert not Environment.objects.filter(project=shop).exists()


def test_a_race_for_the_same_key_is_settled_by_the_database(demo_project, developer,
                                                             monkeypatch):
    shop = Project.objects.create(name="shop", repository=demo_project.repository)
    real_check, checked = services.name_clash, []

    def came_in_between(key: str) -> Refused | None:
        # The check before the insert saw nothing: the holder was launched in between.
        checked.append(key)
        if len(checked) == 1:
            legacy_holder_of_shop_main(demo_project)
            return None
        return real_check(key)

    monkeypatch.setattr(services, "name_clash", came_in_between)

    with pytest.raises(Refused) as refused:
        services.launch(shop, "main", actor=developer, interface=Interface.API)

    assert refused.value.status == 409 and len(checked) == 2
    assert "held by demo:shop/main" in str(refused.value)
    assert not Environment.objects.filter(project=shop).exists()


def test_a_queued_environment_shows_its_place_and_when_a_slot_frees_at_the_latest(
        demo_project, pool_of, developer, client):
    pool_of(1)
    holder = launched(demo_project, "main", developer)
    queued = launched(demo_project, "feature/checkout", developer)
    client.force_login(developer)
    token = tokens.create(developer)

    page = client.get(f"/environments/{queued.pk}").content.decode()
    answer = client.get(f"/api/v1/environments/{queued.pk}",
                        HTTP_AUTHORIZATION=f"Bearer {token}").json()

    assert queued.status == EnvironmentStatus.QUEUED
    assert "#1 in the queue" in page
    assert f"a DB slot frees by {holder.expires_at:%Y-%m-%d %H:%M} UTC at the latest" in page
    assert answer["queue_position"] == 1
    assert answer["queue_free_by"].startswith(holder.expires_at.strftime("%Y-%m-%dT%H:%M"))
