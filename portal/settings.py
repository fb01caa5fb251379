"""Settings for Preview Portal, read from environment variables (names: DESIGN.md)."""

import os
from importlib.util import find_spec
from pathlib import Path

import dj_database_url

from environments.implementations import names as backend_names
from portal import env, startup

BASE_DIR = Path(__file__).resolve().parent.parent
# Where the embedded backends keep their files (SQLite, slots, worktrees, logs, reports).
VAR_DIR = Path(env.text("PORTAL_VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.flag("PORTAL_DEBUG")
# Without PORTAL_DEBUG=1 these stay empty: commands that need no secret (makemigrations) still
# work, and serving refuses to start.
if startup.serving():
    startup.refuse_without_secrets()
SECRET_KEY = env.text("PORTAL_SECRET_KEY")
if not SECRET_KEY and DEBUG:
    SECRET_KEY = "dev-only-insecure-key-set-PORTAL_SECRET_KEY-in-production"
ALLOWED_HOSTS = [h.strip() for h in env.text("PORTAL_ALLOWED_HOSTS").split(",") if h.strip()]
if not ALLOWED_HOSTS and DEBUG:
    ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "testserver"]

PORTAL_BASE_URL = env.text("PORTAL_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_q",
    "environments",
]
# django-ninja is not an installed app: those are imported by every process at start, and ninja
# brings pydantic (~0.25 s of CPU each; workers and commands never serve the API). Its Swagger
# UI's templates and static files are found where it is installed instead (find_spec imports
# nothing), so the API docs stay offline.
NINJA_DIR = Path(find_spec("ninja").origin).parent

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # gunicorn serves no files: the CSS, htmx and admin assets come from here in production.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates", NINJA_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "environments.context_processors.roles",
            ],
        },
    },
]

_SQLITE_OPTIONS = {
    # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock at
    # BEGIN so concurrent writers wait on busy_timeout instead of failing mid-transaction.
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
}
DATABASE_URL = env.text("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = _SQLITE_OPTIONS
    # A file (not memory) so threads in a test share it; one per test process, so two test
    # runs on one checkout do not overwrite each other's.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-portal-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # Django's MySQL backend imports MySQLdb (mysqlclient, a C extension needing libmysqlclient
    # to build); PyMySQL, already used by the pool, stands in for it in pure Python and reports
    # a mysqlclient version Django accepts (2.2.x; it asks for 1.4.3 or newer).
    from portal import mysqldb

    mysqldb.install()
    # Branch names hold emoji: 4-byte UTF-8 on the connection and in the test database.
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
    DATABASES["default"]["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "portal.oidc.Backend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static", NINJA_DIR / "static"]
# WhiteNoise serves static/ and the apps' files where they are (finders), so the read-only
# image needs no collectstatic and no STATIC_ROOT (one it cannot find, it warns about).
WHITENOISE_USE_FINDERS = True
MEDIA_ROOT = VAR_DIR / "media"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = [PORTAL_BASE_URL]
# Served over https (PORTAL_BASE_URL says so): cookies never travel in clear, http is redirected
# and browsers are told (HSTS) to use https only, for the portal's host and its subdomains.
_HTTPS = PORTAL_BASE_URL.startswith("https://") and not DEBUG
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = _HTTPS
# Kubelet probes and Prometheus scrape the pod itself, over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.integer("PORTAL_HSTS_SECONDS", 365 * 24 * 3600) if _HTTPS else 0
# `preload` only makes the domain eligible: nothing is preloaded unless its owner submits it.
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = True
# Behind a proxy that ends TLS (e.g. an ALB) requests arrive over http: the header the proxy
# sets to the client's scheme tells https apart. Set it only behind a proxy that overwrites
# that header, or any client could claim https.
PORTAL_PROXY_SSL_HEADER = env.matching("PORTAL_PROXY_SSL_HEADER", r"([A-Za-z][A-Za-z0-9-]*)?", "")
if PORTAL_PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = (
        "HTTP_" + PORTAL_PROXY_SSL_HEADER.upper().replace("-", "_"), "https"
    )

# Task queue (django-q2). At-least-once delivery: timeout < retry so a task is never redelivered
# while its first delivery still runs; the pipeline's own claim makes redelivery harmless.
PORTAL_BROKER = env.choice("PORTAL_BROKER", ("orm", "redis"), "orm")
REDIS_URL = env.text("REDIS_URL")
Q_CLUSTER: dict[str, object] = {
    "name": "preview-portal",
    "workers": env.integer("PORTAL_WORKERS", 2, minimum=1),
    "timeout": 600,
    "retry": 660,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "poll": 0.2,
    "label": "Tasks",
}
if PORTAL_BROKER == "redis":
    env.require("REDIS_URL", REDIS_URL, "when PORTAL_BROKER=redis")
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
# What portal/login.py counts failed logins in: with Redis every web process shares it.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                      "LOCATION": REDIS_URL, "KEY_PREFIX": "portal"}} if REDIS_URL else {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

PORTAL_RUNTIME = env.choice("PORTAL_RUNTIME", backend_names("runtime"), "local")
PORTAL_KUBECONFIG = env.text("PORTAL_KUBECONFIG")
PORTAL_KUBE_CONTEXT = env.text("PORTAL_KUBE_CONTEXT")
PORTAL_K8S_NAMESPACE = env.text("PORTAL_K8S_NAMESPACE", "previews")
PORTAL_K8S_NAMESPACE_MODE = env.choice(
    "PORTAL_K8S_NAMESPACE_MODE", ("shared", "per-environment"), "shared"
)
PORTAL_INGRESS_CLASS = env.text("PORTAL_INGRESS_CLASS", "alb")
PORTAL_INGRESS_ANNOTATIONS = env.json_object(
    "PORTAL_INGRESS_ANNOTATIONS",
    {
        "alb.ingress.kubernetes.io/scheme": "internet-facing",
        "alb.ingress.kubernetes.io/target-type": "ip",
        "alb.ingress.kubernetes.io/group.name": "preview-portal",
        "alb.ingress.kubernetes.io/listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]',
    },
)
PORTAL_BASE_DOMAIN = env.text("PORTAL_BASE_DOMAIN", "preview.localhost").strip(".")
PORTAL_NAMING = env.choice("PORTAL_NAMING", ("slug", "hash"), "slug")
# Seconds a component has to become ready: a local one to answer its health path, a Deployment
# to roll out.
PORTAL_READY_TIMEOUT = env.number("PORTAL_READY_TIMEOUT", 60, minimum=1)

# Local runtime: branch code in bubblewrap when it is installed (auto), or refuse without it.
PORTAL_SANDBOX = env.choice("PORTAL_SANDBOX", ("auto", "required"), "auto")

PORTAL_DB_POOL = env.choice("PORTAL_DB_POOL", backend_names("pool"), "sqlite")
PORTAL_POOL_MYSQL_URL = env.text("PORTAL_POOL_MYSQL_URL")
PORTAL_POOL_PREFIX = env.matching("PORTAL_POOL_PREFIX", r"[a-z][a-z0-9_]{0,20}", "preview_")
PORTAL_POOL_SIZE = env.integer("PORTAL_POOL_SIZE", 5, minimum=0)
PORTAL_POOL_PUBLIC_HOST = env.text("PORTAL_POOL_PUBLIC_HOST")
# A dataset dump larger than this is refused while it is being sent.
PORTAL_DATASET_MAX_MB = env.number("PORTAL_DATASET_MAX_MB", 2048, minimum=0.001)
if PORTAL_DB_POOL == "mysql":
    env.require("PORTAL_POOL_MYSQL_URL", PORTAL_POOL_MYSQL_URL, "when PORTAL_DB_POOL=mysql")

PORTAL_DNS = env.choice("PORTAL_DNS", backend_names("dns"), "none")
PORTAL_ROUTE53_ZONE_ID = env.text("PORTAL_ROUTE53_ZONE_ID")
# alias: an A record aliasing the ALB (free, no TTL to wait out); cname: for anything else.
PORTAL_ROUTE53_RECORD = env.choice("PORTAL_ROUTE53_RECORD", ("alias", "cname"), "alias")
# One `*.PORTAL_BASE_DOMAIN` record for every environment (all ingresses share one ALB).
PORTAL_ROUTE53_WILDCARD = env.flag("PORTAL_ROUTE53_WILDCARD")
# Wait until Route53 serves the change, so the smoke checks that follow resolve the names.
PORTAL_ROUTE53_WAIT = env.flag("PORTAL_ROUTE53_WAIT", True)
if PORTAL_DNS == "route53":
    env.require("PORTAL_ROUTE53_ZONE_ID", PORTAL_ROUTE53_ZONE_ID, "when PORTAL_DNS=route53")
    env.refuse_unless(
        PORTAL_RUNTIME == "kubernetes",
        "PORTAL_DNS=route53 needs PORTAL_RUNTIME=kubernetes (the local runtime has no LB)",
    )

PORTAL_REPORTS = env.choice("PORTAL_REPORTS", backend_names("storage"), "file")
PORTAL_S3_BUCKET = env.text("PORTAL_S3_BUCKET")
if PORTAL_REPORTS == "s3":
    env.require("PORTAL_S3_BUCKET", PORTAL_S3_BUCKET, "when PORTAL_REPORTS=s3")
AWS_ENDPOINT_URL = env.text("AWS_ENDPOINT_URL")
AWS_REGION = env.text("AWS_REGION")
# Hours a report link (presigned for S3, signed for files) stays valid; SigV4 allows 7 days.
PORTAL_REPORT_LINK_HOURS = env.number("PORTAL_REPORT_LINK_HOURS", 168, minimum=0.01)
env.refuse_unless(PORTAL_REPORT_LINK_HOURS <= 168, "PORTAL_REPORT_LINK_HOURS is at most 168")

PORTAL_NOTIFY = env.choice("PORTAL_NOTIFY", backend_names("notify"), "log")
SLACK_BOT_TOKEN = env.text("SLACK_BOT_TOKEN")
PORTAL_SLACK_CHANNEL = env.text("PORTAL_SLACK_CHANNEL")
PORTAL_SLACK_API_URL = env.text("PORTAL_SLACK_API_URL", "https://slack.com/api/")
if PORTAL_NOTIFY == "slack":
    env.require("SLACK_BOT_TOKEN", SLACK_BOT_TOKEN, "when PORTAL_NOTIFY=slack")
    env.require("PORTAL_SLACK_CHANNEL", PORTAL_SLACK_CHANNEL, "when PORTAL_NOTIFY=slack")

PORTAL_GITHUB_WEBHOOK_SECRET = env.text("PORTAL_GITHUB_WEBHOOK_SECRET")
PORTAL_GITHUB_TOKEN = env.text("PORTAL_GITHUB_TOKEN")
PORTAL_GITHUB_API_URL = env.text("PORTAL_GITHUB_API_URL", "https://api.github.com")

# Single sign-on through an OpenID Connect provider (portal/oidc.py); no issuer: local accounts.
PORTAL_OIDC_ISSUER = env.text("PORTAL_OIDC_ISSUER")
PORTAL_OIDC_CLIENT_ID = env.text("PORTAL_OIDC_CLIENT_ID")
PORTAL_OIDC_CLIENT_SECRET = env.text("PORTAL_OIDC_CLIENT_SECRET")
PORTAL_OIDC_GROUPS_CLAIM = env.text("PORTAL_OIDC_GROUPS_CLAIM", "groups")
PORTAL_OIDC_ROLE_MAP = env.json_object("PORTAL_OIDC_ROLE_MAP", {})
PORTAL_OIDC_SCOPES = env.text("PORTAL_OIDC_SCOPES", "openid email profile")
PORTAL_OIDC_NAME = env.text("PORTAL_OIDC_NAME")  # the login button's; empty: the issuer's host
PORTAL_LOCAL_LOGIN = env.flag("PORTAL_LOCAL_LOGIN", True)
# The role names of environments/roles.py (not importable before the apps are loaded).
env.refuse_unless(set(PORTAL_OIDC_ROLE_MAP.values()) <= {"developer", "qa", "admin"},
                  "PORTAL_OIDC_ROLE_MAP maps groups to developer, qa or admin only, not "
                  f"{sorted(set(PORTAL_OIDC_ROLE_MAP.values()) - {'developer', 'qa', 'admin'})}")
if PORTAL_OIDC_ISSUER:
    env.require("PORTAL_OIDC_CLIENT_ID", PORTAL_OIDC_CLIENT_ID, "with PORTAL_OIDC_ISSUER")
    env.refuse_unless(bool(PORTAL_OIDC_ROLE_MAP), "PORTAL_OIDC_ROLE_MAP must map at least one "
                      "group to a role with PORTAL_OIDC_ISSUER: everyone would be refused")
env.refuse_unless(PORTAL_LOCAL_LOGIN or bool(PORTAL_OIDC_ISSUER),
                  "PORTAL_LOCAL_LOGIN=0 needs PORTAL_OIDC_ISSUER: only superusers could sign in")
# mozilla-django-oidc's own; the endpoints come from discovery (portal/oidc.py).
OIDC_RP_CLIENT_ID = PORTAL_OIDC_CLIENT_ID
OIDC_RP_CLIENT_SECRET = PORTAL_OIDC_CLIENT_SECRET
OIDC_RP_SCOPES = PORTAL_OIDC_SCOPES
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_USE_PKCE = True
OIDC_TOKEN_USE_BASIC_AUTH = True  # client_secret_basic: what providers accept by default
OIDC_TIMEOUT = 10

# How long a worker's claim on a run lasts without a heartbeat (one is sent at every step);
# after that another worker may take the run over and resume it.
PORTAL_CLAIM_SECONDS = env.number("PORTAL_CLAIM_SECONDS", 120, minimum=0.1)
# A slot reset asked for this long ago with no outcome was lost: the reconciler asks again.
PORTAL_RESET_LOST_MINUTES = env.number("PORTAL_RESET_LOST_MINUTES", 10, minimum=0.01)
PORTAL_SMOKE_ATTEMPTS = env.integer("PORTAL_SMOKE_ATTEMPTS", 3, minimum=1)
# Kubernetes runtime: the image of the smoke Jobs (one with pytest: the portal's own), unless a
# project's smoke configuration names one.
PORTAL_SMOKE_IMAGE = env.text("PORTAL_SMOKE_IMAGE")
# The demo's one image (without its tag) where a test cluster's registry has it.
PORTAL_DEMO_IMAGE = env.text("PORTAL_DEMO_IMAGE")
# Seconds before the second smoke attempt, doubling for each further one (at most a minute).
PORTAL_SMOKE_BACKOFF = env.number("PORTAL_SMOKE_BACKOFF", 5, minimum=0)
PORTAL_ENV_TTL_HOURS = env.number("PORTAL_ENV_TTL_HOURS", 72, minimum=0.001)
# "Extend" never pushes expiry further than this from now; admins can pin instead.
PORTAL_ENV_MAX_TTL_HOURS = env.number("PORTAL_ENV_MAX_TTL_HOURS", 24 * 14, minimum=0.001)
PORTAL_EXPIRY_WARNING_HOURS = env.number("PORTAL_EXPIRY_WARNING_HOURS", 4, minimum=0)
# Live environments a user may own unless an admin set a quota of their own; 0: no limit.
PORTAL_QUOTA_PER_USER = env.integer("PORTAL_QUOTA_PER_USER", 0, minimum=0)

# JSON lines by default, for log collectors; plain text for people at a terminal.
PORTAL_LOG_FORMAT = env.choice("PORTAL_LOG_FORMAT", ("json", "plain"), "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "portal.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "portal.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": PORTAL_LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
