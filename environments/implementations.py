"""Which implementations each concern has, by the name its setting takes. The settings offer
these names (portal/settings.py) and the registry loads these classes (backends.get): one list,
so the two cannot disagree. No Django imports here: the settings read it."""

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


def names(concern: str) -> tuple[str, ...]:
    return tuple(IMPLEMENTATIONS[concern][1])
