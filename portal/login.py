"""Password logins, throttled against guessing: after FAILURES failed attempts for one user name
from one address within WINDOW seconds, further attempts are refused (the right password too)
until the oldest failure is WINDOW old. Kept in the cache (Redis when REDIS_URL is set, so all
web processes share it), the portal's login page and the admin's alike. With PORTAL_LOCAL_LOGIN=0
only superusers sign in with a password."""

import hashlib
import math
from time import time
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.http import HttpRequest

FAILURES = 5
WINDOW = 15 * 60


class Throttled:
    """Mixed into an AuthenticationForm, before it."""

    request: HttpRequest | None
    data: Any

    def clean(self) -> dict[str, Any]:
        key = _key(self.request, str(self.data.get("username", "")))
        failures = _recent(key)
        if len(failures) >= FAILURES:
            minutes = math.ceil((failures[0] + WINDOW - time()) / 60)
            raise ValidationError(
                f"Too many failed attempts: try again in {minutes} minute"
                f"{'' if minutes == 1 else 's'}.", code="throttled")
        try:
            cleaned: dict[str, Any] = super().clean()
        except ValidationError:
            cache.set(key, [*failures, time()], WINDOW)
            raise
        cache.delete(key)
        return cleaned


class LocalLoginSwitch:
    """PORTAL_LOCAL_LOGIN=0: passwords are for superusers only (the break-glass account from
    createsuperuser); everyone else signs in through the identity provider."""

    def confirm_login_allowed(self, user: AbstractBaseUser) -> None:
        super().confirm_login_allowed(user)  # type: ignore[misc]
        if not settings.PORTAL_LOCAL_LOGIN and not user.is_superuser:
            raise ValidationError("Password sign-in is switched off: sign in through the "
                                  "identity provider.", code="local_login_off")


class LoginForm(Throttled, LocalLoginSwitch, AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Your user name and password did not match. Please try again.",
    }


class AdminLoginForm(Throttled, LocalLoginSwitch, AdminAuthenticationForm):
    pass


def _key(request: HttpRequest | None, username: str) -> str:
    address = request.META.get("REMOTE_ADDR", "") if request else ""
    # Hashed: a user name may hold what a cache key may not (spaces, any length).
    digest = hashlib.sha256(f"{username.casefold()}\n{address}".encode()).hexdigest()
    return f"login-failures:{digest}"


def _recent(key: str) -> list[float]:
    """Times of the failures still inside the window, oldest first."""
    return [at for at in cache.get(key, []) if at > time() - WINDOW]
