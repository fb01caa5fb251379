"""The role matrix: each role against each mutating endpoint of the JSON API and of the web
pages, exactly as environments.roles.ALLOWED says. Cheap: rows are made directly and no run ever
executes."""

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.http import HttpResponse
from django.test import Client

from environments import roles, taskqueue, tokens
from environments.models import AuditEvent, DbSlot, Environment, Interface, Run
from tests.support.api_client import call, ready_environment

# endpoint -> (action it needs, interface, method, path, body, status when allowed)
MUTATIONS = {
    "api launch": (roles.LAUNCH, Interface.API, "post", "/environments",
                   {"project": "demo", "branch": "feature/checkout"}, 202),
    "api redeploy": (roles.REDEPLOY, Interface.API, "post", "/environments/{id}/redeploy", None,
                     202),
    "api smoke": (roles.SMOKE, Interface.API, "post", "/environments/{id}/smoke", None, 202),
    "api teardown": (roles.TEARDOWN, Interface.API, "delete", "/environments/{id}", None, 202),
    "api resize_pool": (roles.MANAGE_POOL, Interface.API, "put", "/pool", {"size": 3}, 200),
    "api extend": (roles.EXTEND, Interface.API, "post", "/environments/{id}/extend",
                   {"hours": 24}, 200),
    # The pages answer a change with a redirect; a refused one writes no audit event.
    "web launch": (roles.LAUNCH, Interface.WEB, "post", "/launch",
                   {"project": "demo", "branch": "feature/checkout"}, 302),
    "web redeploy": (roles.REDEPLOY, Interface.WEB, "post", "/environments/{id}/redeploy", None,
                     302),
    "web smoke": (roles.SMOKE, Interface.WEB, "post", "/environments/{id}/smoke", None, 302),
    "web teardown": (roles.TEARDOWN, Interface.WEB, "post", "/environments/{id}/teardown", None,
                     302),
    "web resize_pool": (roles.MANAGE_POOL, Interface.WEB, "post", "/pool/resize", {"size": 3},
                        302),
    "web extend": (roles.EXTEND, Interface.WEB, "post", "/environments/{id}/extend",
                   {"hours": "24"}, 302),
    "web pin": (roles.PIN, Interface.WEB, "post", "/environments/{id}/pin", {"pinned": "1"}, 302),
}
# user fixture -> its role
WHO = {"developer": roles.DEVELOPER, "qa": roles.QA, "admin": roles.ADMIN, "outsider": None}


def snapshot() -> tuple:
    return (
        Run.objects.count(), AuditEvent.objects.count(), Environment.objects.count(),
        list(Environment.objects.values_list("status", "expires_at", "pinned")),
        list(DbSlot.objects.values_list("name", "state")),
    )


def send(client: Client, user: User, interface: str, method: str, path: str,
         body: dict[str, Any] | None) -> HttpResponse:
    if interface == Interface.API:
        return call(client, method, path, tokens.create(user), body)
    client.force_login(user)
    return getattr(client, method)(path, body or {})


@pytest.mark.parametrize("endpoint", MUTATIONS)
@pytest.mark.parametrize("who", WHO)
def test_each_role_may_call_exactly_the_endpoints_its_role_allows(
        who, endpoint, request, client, monkeypatch, demo_project, pool_of):
    monkeypatch.setattr(taskqueue, "enqueue_run", lambda run_id: None)
    pool_of(2)
    user = request.getfixturevalue(who)
    environment = ready_environment(demo_project, "main", user)
    action, interface, method, path, body, allowed_status = MUTATIONS[endpoint]
    before = snapshot()

    response = send(client, user, interface, method, path.format(id=environment.pk), body)

    if WHO[who] in roles.ALLOWED[action]:
        assert response.status_code == allowed_status, response.content
        assert AuditEvent.objects.filter(actor=user, interface=interface).exists()
    else:
        assert response.status_code == 403, response.content
        if interface == Interface.API:
            assert set(response.json()) == {"error", "detail"}
        assert snapshot() == before


# endpoint -> (interface, method, path, body, status when allowed): what a pin protects.
PINNED_CHANGES = {
    "api redeploy": (Interface.API, "post", "/environments/{id}/redeploy", None, 202),
    "api launch of its branch": (Interface.API, "post", "/environments",
                                 {"project": "demo", "branch": "main"}, 202),
    "api teardown": (Interface.API, "delete", "/environments/{id}", None, 202),
    "web redeploy": (Interface.WEB, "post", "/environments/{id}/redeploy", None, 302),
    "web teardown": (Interface.WEB, "post", "/environments/{id}/teardown", None, 302),
}


def colleague() -> User:
    """Another developer: the role allows redeploys and teardowns, of unpinned ones."""
    user = User.objects.create_user("colleague", password="pw-colleague")
    user.groups.add(Group.objects.get_or_create(name=roles.DEVELOPER)[0])
    return user


@pytest.fixture
def pinned(monkeypatch, demo_project, pool_of, developer) -> Environment:
    monkeypatch.setattr(taskqueue, "enqueue_run", lambda run_id: None)
    pool_of(1)
    environment = ready_environment(demo_project, "main", developer)
    Environment.objects.filter(pk=environment.pk).update(pinned=True)
    environment.refresh_from_db()
    return environment


@pytest.mark.parametrize("endpoint", PINNED_CHANGES)
@pytest.mark.parametrize("who", ["developer", "admin", "colleague"])
def test_a_pinned_environment_is_redeployed_or_torn_down_by_its_owner_or_an_admin_only(
        who, endpoint, request, client, pinned):
    user = colleague() if who == "colleague" else request.getfixturevalue(who)
    interface, method, path, body, allowed_status = PINNED_CHANGES[endpoint]
    before = snapshot()

    response = send(client, user, interface, method, path.format(id=pinned.pk), body)

    if who != "colleague":
        assert response.status_code == allowed_status, response.content
        assert AuditEvent.objects.filter(actor=user, interface=interface).exists()
        return
    assert snapshot() == before
    if interface == Interface.API:
        assert response.status_code == 403, response.content
        assert response.json()["error"].startswith("the environment is pinned: only its owner")
        assert response.json()["detail"] == {"owner": "dev"}
    else:
        shown = [str(m) for m in get_messages(response.wsgi_request)]
        assert shown and shown[0].startswith("the environment is pinned: only its owner")


def test_the_cli_refuses_to_tear_down_someone_elses_pinned_environment(pinned):
    before = snapshot()
    colleague()

    with pytest.raises(CommandError, match="pinned: only its owner or an admin may tear"):
        call_command("teardown", pinned.pk, "--user", "colleague")

    assert snapshot() == before


def test_the_page_offers_no_redeploy_or_teardown_of_a_pinned_environment_to_others(
        pinned, developer):
    def buttons(user: User) -> set[str]:
        client = Client()
        client.force_login(user)
        page = client.get(f"/environments/{pinned.pk}").content.decode()
        return {name for name in ("Redeploy</button>", "Tear down</button>") if name in page}

    assert buttons(developer) == {"Redeploy</button>", "Tear down</button>"}
    assert buttons(colleague()) == set()
