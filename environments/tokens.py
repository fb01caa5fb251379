"""API tokens: shown once, stored as a SHA-256 digest; refused once expired or revoked."""

import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from environments import audit
from environments.models import ApiToken, Interface

PREFIX = "pp_"


def create(user: AbstractBaseUser, name: str = "", expires_at: datetime | None = None) -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user, name=name, digest=ApiToken.digest_of(token), prefix=token[:10],
        expires_at=expires_at,
    )
    return token


def issue(user: AbstractBaseUser, name: str, expires_at: datetime | None) -> str:
    """A token a person made for themselves on the tokens page, audited."""
    token = create(user, name, expires_at)
    audit.record(user, Interface.WEB, "create_api_token", prefix=token[:10], name=name,
                 expires_at=expires_at.isoformat() if expires_at else None)
    return token


def revoke(user: AbstractBaseUser, token_id: int) -> ApiToken | None:
    """Delete one of the user's own tokens (audited); None when they have no such token."""
    found = ApiToken.objects.filter(pk=token_id, user=user).first()
    if found is None:
        return None
    found.delete()
    audit.record(user, Interface.WEB, "revoke_api_token", prefix=found.prefix, name=found.name)
    return found


def user_for(token: str) -> AbstractBaseUser | None:
    now = timezone.now()
    found = (
        ApiToken.objects.select_related("user")
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now),
                digest=ApiToken.digest_of(token), user__is_active=True)
        .first()
    )
    if found is None:
        return None
    ApiToken.objects.filter(pk=found.pk).update(last_used_at=now)
    return found.user
