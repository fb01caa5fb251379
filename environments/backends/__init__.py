"""Each integration is one small interface with an embedded and a production implementation,
chosen by a setting. SDKs are imported only inside their implementation module."""

from functools import cache
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from environments.implementations import IMPLEMENTATIONS


class BackendError(Exception):
    """A backend failed; `retryable` says whether trying the same thing again can help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@cache
def get(concern: str) -> Any:
    setting, choices = IMPLEMENTATIONS[concern]
    chosen = getattr(settings, setting)
    if chosen not in choices:
        raise ImproperlyConfigured(f"{setting}={chosen} is not available in this version")
    return import_string(choices[chosen])()


def check_configured() -> None:
    for concern in IMPLEMENTATIONS:
        get(concern)


@checks.register()
def pool_reachable_check(app_configs: object = None, **kwargs: object
                         ) -> list[checks.CheckMessage]:
    """Pods run elsewhere than the portal: a pool of files on its disk is one they cannot open
    (every pod would crash at start with "unable to open database file")."""
    if settings.PORTAL_RUNTIME == "kubernetes" and settings.PORTAL_DB_POOL == "sqlite":
        return [checks.Error(
            "PORTAL_RUNTIME=kubernetes needs a DB pool its pods reach, and PORTAL_DB_POOL=sqlite "
            "keeps each slot in a file on the portal's disk",
            hint="set PORTAL_DB_POOL=mysql with PORTAL_POOL_MYSQL_URL (and "
                 "PORTAL_POOL_PUBLIC_HOST if the pods reach the server by another address)",
            id="preview.E002")]
    return []


def _forget(**kwargs: object) -> None:
    get.cache_clear()


setting_changed.connect(_forget)
