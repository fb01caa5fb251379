"""The audit log: who did what to which environment, through which interface."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from environments.models import AuditEvent, Environment

User = AbstractBaseUser | AnonymousUser | None

# Whom an action without a portal user is recorded as: the portal itself, or whoever a webhook
# acts for.
_ACTING_FOR: ContextVar[str] = ContextVar("acting_for", default="system")


@contextmanager
def acting_for(name: str) -> Iterator[None]:
    """Audit what is done inside, with no portal user, as done by `name`."""
    token = _ACTING_FOR.set(name)
    try:
        yield
    finally:
        _ACTING_FOR.reset(token)


def record(actor: User, interface: str, action: str, environment: Environment | None = None,
           **detail: Any) -> None:
    user = actor if actor is not None and actor.is_authenticated else None
    AuditEvent.objects.create(
        actor=user, actor_name=user.get_username() if user else _ACTING_FOR.get(),
        interface=interface, action=action, environment=environment, detail=detail,
    )
