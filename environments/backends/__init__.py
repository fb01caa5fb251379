"""Each integration is one small interface with an embedded and a production implementation,
chosen by a setting. SDKs are imported only inside their implementation module."""

from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string


class BackendError(Exception):
    """A backend failed; `retryable` says whether trying the same thing again can help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


IMPLEMENTATIONS: dict[str, tuple[str, dict[str, str]]] = {
    "runtime": (
        "PORTAL_RUNTIME",
        {
            "local": "environments.backends.runtime.local.LocalRuntime",
            "kubernetes": "environments.backends.runtime.kubernetes.KubernetesRuntime",
        },
    ),
    "pool": (
        "PORTAL_DB_POOL",
        {
            "sqlite": "environments.backends.pool.sqlite.SqlitePool",
            "mysql": "environments.backends.pool.mysql.MysqlPool",
        },
    ),
    "dns": (
        "PORTAL_DNS",
        {
            "none": "environments.backends.dns.none.NoDns",
            "route53": "environments.backends.dns.route53.Route53Dns",
        },
    ),
    "storage": (
        "PORTAL_REPORTS",
        {
            "file": "environments.backends.storage.file.FileReports",
            "s3": "environments.backends.storage.s3.S3Reports",
        },
    ),
    "notify": (
        "PORTAL_NOTIFY",
        {
            "log": "environments.backends.notify.log.LogNotifier",
            "slack": "environments.backends.notify.slack.SlackNotifier",
        },
    ),
}


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


def _forget(**kwargs: object) -> None:
    get.cache_clear()


setting_changed.connect(_forget)
