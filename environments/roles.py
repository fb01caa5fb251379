"""Who may do what (DESIGN.md, "Who uses it"): groups developer, qa, admin; superusers are admin."""

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

DEVELOPER, QA, ADMIN = "developer", "qa", "admin"
ROLES = (DEVELOPER, QA, ADMIN)

VIEW = "view"
LAUNCH = "launch"
REDEPLOY = "redeploy"
TEARDOWN = "teardown"
SMOKE = "smoke"
EXTEND = "extend"  # developers only their own environments (checked in services)
PIN = "pin"
MANAGE_POOL = "manage_pool"
MANAGE_PROJECTS = "manage_projects"
HEALTH = "health"  # the reconciler's findings, and running a pass

ALLOWED: dict[str, frozenset[str]] = {
    VIEW: frozenset({DEVELOPER, QA, ADMIN}),
    LAUNCH: frozenset({DEVELOPER, ADMIN}),
    REDEPLOY: frozenset({DEVELOPER, ADMIN}),
    TEARDOWN: frozenset({DEVELOPER, ADMIN}),
    SMOKE: frozenset({DEVELOPER, QA, ADMIN}),
    EXTEND: frozenset({DEVELOPER, ADMIN}),
    PIN: frozenset({ADMIN}),
    MANAGE_POOL: frozenset({ADMIN}),
    MANAGE_PROJECTS: frozenset({ADMIN}),
    HEALTH: frozenset({ADMIN}),
}


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[str]:
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    if user.is_superuser:
        return frozenset(ROLES)
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._portal_roles = cached
    return cached


def can(user: AbstractBaseUser | AnonymousUser, action: str) -> bool:
    return bool(roles_of(user) & ALLOWED[action])
