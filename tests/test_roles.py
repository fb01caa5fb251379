"""The role matrix of the JSON API: each role against each mutating endpoint, exactly as
environments.roles.ALLOWED says. Cheap: rows are made directly and no run ever executes."""

import pytest

from environments import roles, services, tokens
from environments.models import AuditEvent, DbSlot, Environment, Interface, Run
from tests.api_client import call, ready_environment

# endpoint -> (action it needs, method, path, body, status when allowed)
MUTATIONS = {
    "launch": (roles.LAUNCH, "post", "/environments",
               {"project": "demo", "branch": "feature/checkout"}, 202),
    "redeploy": (roles.REDEPLOY, "post", "/environments/{id}/redeploy", None, 202),
    "smoke": (roles.SMOKE, "post", "/environments/{id}/smoke", None, 202),
    "teardown": (roles.TEARDOWN, "delete", "/environments/{id}", None, 202),
    "resize_pool": (roles.MANAGE_POOL, "put", "/pool", {"size": 3}, 200),
}
# user fixture -> its role
WHO = {"developer": roles.DEVELOPER, "qa": roles.QA, "admin": roles.ADMIN, "outsider": None}


def snapshot() -> tuple:
    return (
        Run.objects.count(), AuditEvent.objects.count(), Environment.objects.count(),
        list(Environment.objects.values_list("status", flat=True)),
        list(DbSlot.objects.values_list("name", "state")),
    )


@pytest.mark.parametrize("endpoint", MUTATIONS)
@pytest.mark.parametrize("who", WHO)
def test_each_role_may_call_exactly_the_endpoints_its_role_allows(
        who, endpoint, request, client, monkeypatch, demo_project, pool_of):
    monkeypatch.setattr(services, "enqueue_run", lambda run_id: None)
    pool_of(2)
    user = request.getfixturevalue(who)
    environment = ready_environment(demo_project, "main", user)
    action, method, path, body, allowed_status = MUTATIONS[endpoint]
    token = tokens.create(user)
    before = snapshot()

    response = call(client, method, path.format(id=environment.pk), token, body)

    if WHO[who] in roles.ALLOWED[action]:
        assert response.status_code == allowed_status, response.content
        assert AuditEvent.objects.filter(actor=user, interface=Interface.API).exists()
    else:
        assert response.status_code == 403, response.content
        assert set(response.json()) == {"error", "detail"}
        assert snapshot() == before
