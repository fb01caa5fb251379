"""The DB pool page: usage bar and slot table for every role, resizing for admins only, refusals
shown as messages with nothing changed, no password ever, polling only while a slot resets."""

import re
from urllib.parse import urlparse

import pytest
from django.contrib.messages import get_messages
from django.db import connection
from django.http import HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from environments import crypto, dbpool, naming
from environments.backends import BackendError, get
from environments.models import (
    AuditEvent,
    DbSlot,
    Environment,
    Interface,
    Project,
    SlotState,
)
from tests.support.clients import POLL, client_for

SERVER_DOWN = ("MySQL pool: reset preview_01: cannot connect as pool_admin@db:3306: "
               "(2003, \"Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)\")"
               "\nand a second line that must not be cut off")


def leased_environments(project: Project, count: int) -> list[Environment]:
    """Environments holding a slot each, made directly (no pipeline runs)."""
    environments = []
    for n in range(count):
        branch = f"feature/{n}"
        environment = Environment.objects.create(
            project=project, branch=branch, env_key=naming.env_key(project.name, branch),
            queued_at=timezone.now(),
        )
        assert dbpool.lease_slot(environment) is not None
        environments.append(environment)
    return environments


def counts(page: str) -> dict[str, int]:
    return {state: int(n) for state, n in re.findall(r'data-count="(\w+)">(\d+)<', page)}


def states(page: str) -> dict[str, str]:
    rows = re.findall(r'<tr data-slot="(\w+)">.*?data-status="(\w+)"', page, re.S)
    return dict(rows)


def shown(response: HttpResponse) -> list[tuple[str, str]]:
    """The messages the page that was redirected to showed."""
    assert response.redirect_chain == [(reverse("pool"), 302)]
    return [(m.level_tag, str(m)) for m in get_messages(response.wsgi_request)]


def pool_state() -> list[tuple[str, str]]:
    return list(DbSlot.objects.order_by("name").values_list("name", "state"))


def resize(client: Client, size: str) -> HttpResponse:
    return client.post(reverse("pool_resize"), {"size": size}, follow=True)


# What the page shows.

def test_admin_sees_usage_and_every_slot_with_its_environment(demo_project, pool_of, admin):
    pool_of(5)
    first, _ = leased_environments(demo_project, 2)
    DbSlot.objects.filter(name="preview_03").update(state=SlotState.RESETTING)
    # Retires preview_05, the highest free slot.
    dbpool.resize_pool(4, actor=admin, interface=Interface.WEB)

    page = client_for(admin).get(reverse("pool")).content.decode()

    assert counts(page) == {"free": 1, "restoring": 0, "warm": 0, "leased": 2, "resetting": 1,
                            "broken": 0}
    assert states(page) == {"preview_01": "leased", "preview_02": "leased",
                            "preview_03": "resetting", "preview_04": "free",
                            "preview_05": "retired"}
    assert page.index("preview_04") < page.index('class="retired"') < page.index("preview_05")
    assert f'href="{reverse("environment", args=[first.pk])}">demo:feature/0</a>' in page
    assert "4 slots in service" in page
    assert 'action="/pool/resize"' in page and 'value="4"' in page
    assert 'href="/pool" aria-current="page">DB pool</a>' in page


def test_a_failed_reset_shows_as_broken_with_its_whole_error(
        demo_project, pool_of, qa, monkeypatch, django_capture_on_commit_callbacks):
    pool_of(2)
    environment, = leased_environments(demo_project, 1)

    def refuse(slot: str) -> str:
        raise BackendError(SERVER_DOWN)

    monkeypatch.setattr(get("pool"), "reset", refuse)
    with django_capture_on_commit_callbacks(execute=True):
        dbpool.release_slot(environment)

    page = client_for(qa).get(reverse("pool")).content.decode()

    error = DbSlot.objects.get(name="preview_01").error
    assert error == f"reset failed: {SERVER_DOWN}"
    assert counts(page) == {"free": 1, "restoring": 0, "warm": 0, "leased": 0, "resetting": 0,
                            "broken": 1}
    assert states(page)["preview_01"] == "broken"
    assert f'<td class="error">{escape(error)}</td>' in page


@pytest.mark.parametrize("who", ["developer", "qa"])
def test_developers_and_qa_see_the_pool_read_only(who, request, demo_project, pool_of):
    pool_of(2)
    leased_environments(demo_project, 1)
    client = client_for(request.getfixturevalue(who))

    page = client.get(reverse("pool")).content.decode()

    assert counts(page) == {"free": 1, "restoring": 0, "warm": 0, "leased": 1, "resetting": 0,
                            "broken": 0}
    assert ">DB pool</a>" in page
    assert "pool/resize" not in page and "Resize" not in page
    response = client.post(reverse("pool_resize"), {"size": "5"})
    assert response.status_code == 403
    assert DbSlot.objects.count() == 2 and not AuditEvent.objects.exists()


def test_the_page_without_a_role_is_403_and_without_a_session_the_login(outsider, pool_of):
    pool_of(1)

    assert client_for(outsider).get(reverse("pool")).status_code == 403
    assert "DB pool" not in client_for(outsider).get(reverse("pool")).content.decode()
    response = Client().get(reverse("pool"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_the_page_polls_only_while_a_slot_is_resetting(pool_of, qa):
    pool_of(2)
    client = client_for(qa)
    assert POLL not in client.get(reverse("pool")).content.decode()

    DbSlot.objects.filter(name="preview_02").update(state=SlotState.RESETTING)
    page = client.get(reverse("pool")).content.decode()
    live = client.get(reverse("pool"), headers={"HX-Request": "true"}).content.decode()

    assert 'hx-get="/pool" hx-trigger="every 2s"' in page
    assert live.count('id="pool-live"') == 1 and "<html" not in live
    assert 'hx-trigger="every 2s"' in live
    DbSlot.objects.filter(name="preview_02").update(state=SlotState.FREE)
    settled = client.get(reverse("pool"), headers={"HX-Request": "true"}).content.decode()
    assert POLL not in settled


def test_query_count_does_not_grow_with_slots(demo_project, pool_of, admin):
    client = client_for(admin)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("pool")).status_code == 200
        return len(captured)

    pool_of(2)
    leased_environments(demo_project, 1)
    few = queries()
    pool_of(8)
    leased_environments(Project.objects.create(name="shop", repository="/nowhere"), 4)
    DbSlot.objects.filter(name="preview_08").update(state=SlotState.RETIRED)
    assert queries() == few


# Resizing.

def test_admin_grows_and_shrinks_the_pool(pool_of, admin):
    pool_of(2)
    client = client_for(admin)

    grown = resize(client, "4")
    assert shown(grown) == [("success", "pool resized to 4 (2 added, 0 retired)")]
    assert counts(grown.content.decode())["free"] == 4
    shrunk = resize(client, "3")
    assert shown(shrunk) == [("success", "pool resized to 3 (0 added, 1 retired)")]

    assert dbpool.active_slots().count() == 3
    assert states(shrunk.content.decode())["preview_04"] == "retired"
    events = AuditEvent.objects.filter(actor=admin, interface=Interface.WEB, action="resize_pool")
    assert sorted(e.detail["size"] for e in events) == [3, 4]


def test_shrinking_below_the_leased_slots_is_refused_and_changes_nothing(
        demo_project, pool_of, admin):
    pool_of(3)
    leased_environments(demo_project, 2)
    before = pool_state()

    response = resize(client_for(admin), "1")

    assert shown(response) == [("error", "cannot shrink the pool to 1: 2 slots are leased")]
    assert pool_state() == before
    assert not AuditEvent.objects.exists()


def test_a_pool_server_failure_is_shown_as_a_message(pool_of, admin, monkeypatch):
    pool_of(1)

    def refuse(slot: str) -> str:
        raise BackendError("MySQL pool: create preview_02: Access denied for user 'pool'")

    monkeypatch.setattr(get("pool"), "create", refuse)
    response = resize(client_for(admin), "3")

    assert shown(response) == [("error", "the pool server refused: MySQL pool: create "
                                          "preview_02: Access denied for user 'pool'")]
    assert pool_state() == [("preview_01", "free")]


@pytest.mark.parametrize("size", ["", "two", "-1", "2.5", "501"])
def test_a_size_that_is_not_a_sane_whole_number_is_refused(size, pool_of, admin):
    pool_of(1)

    response = resize(client_for(admin), size)

    assert shown(response) == [("error", "the pool size must be a whole number from 0 to 500")]
    assert pool_state() == [("preview_01", "free")]
    assert not AuditEvent.objects.exists()


def test_resize_answers_get_with_405(admin):
    assert client_for(admin).get(reverse("pool_resize")).status_code == 405


# Secrets.

def test_no_slot_password_reaches_the_page_with_the_mysql_pool(mysql_pool, demo_project, admin):
    dbpool.ensure_pool_size(3)
    leased_environments(demo_project, 1)
    made = list(DbSlot.objects.all())

    page = client_for(admin).get(reverse("pool")).content.decode()

    assert states(page) == {slot.name: slot.state for slot in made}
    for slot in made:
        password = crypto.unseal(slot.secret)
        assert password and password not in page
        assert slot.secret not in page
    assert urlparse(mysql_pool.admin_url).password not in page
