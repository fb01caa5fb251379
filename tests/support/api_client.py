"""Helpers for the JSON API tests: calls with a bearer token, and environments made directly in
the database (no pipeline) in a state every action accepts."""

import json
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from environments import naming
from environments.models import DbSlot, Environment, EnvironmentStatus, Project, SlotState

PREFIX = "/api/v1"


def call(client: Client, method: str, path: str, token: str | None = None,
         body: Any = None, raw: str | None = None) -> HttpResponse:
    """`body` is sent as JSON; `raw` as it is (for malformed bodies)."""
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    if method == "get":
        return client.get(PREFIX + path, **headers)
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return getattr(client, method)(
        PREFIX + path, data=data, content_type="application/json", **headers
    )


def ready_environment(project: Project, branch: str, owner: User | None,
                      commit: str = "a" * 40) -> Environment:
    """A ready environment holding the first free DB slot (the pool must have one)."""
    now = timezone.now()
    environment = Environment.objects.create(
        project=project, branch=branch, commit=commit, owner=owner,
        env_key=naming.env_key(project.name, branch), status=EnvironmentStatus.READY,
        urls={"web": "http://127.0.0.1:9/"}, queued_at=now, ready_at=now,
    )
    slot = DbSlot.objects.filter(state=SlotState.FREE).first()
    DbSlot.objects.filter(pk=slot.pk).update(
        state=SlotState.LEASED, environment=environment, leased_at=now
    )
    return environment
