"""API tokens: shown once, stored as a SHA-256 digest."""

import secrets

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from environments.models import ApiToken

PREFIX = "pp_"


def create(user: AbstractBaseUser, name: str = "") -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user, name=name, digest=ApiToken.digest_of(token), prefix=token[:10]
    )
    return token


def user_for(token: str) -> AbstractBaseUser | None:
    found = (
        ApiToken.objects.select_related("user")
        .filter(digest=ApiToken.digest_of(token), user__is_active=True)
        .first()
    )
    if found is None:
        return None
    ApiToken.objects.filter(pk=found.pk).update(last_used_at=timezone.now())
    return found.user
