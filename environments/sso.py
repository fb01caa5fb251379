"""Single sign-on: the person an OpenID Connect provider vouches for becomes a portal user (made
at their first sign-in), whose roles are set at every sign-in from their provider groups
through PORTAL_OIDC_ROLE_MAP. Someone moved out of a group loses its role at their next
sign-in; someone in no mapped group is refused (and loses every role they had)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.db import transaction
from django.utils import timezone

from environments import audit, roles
from environments.models import Interface, SsoIdentity

# What Django's username validator accepts; anything else in a provider's name becomes "-".
NOT_IN_USERNAME = re.compile(r"[^\w.@+-]+")
USERNAME_CHARS = 150


class SignInRefused(Exception):
    """Why the portal does not sign someone in; `status` is the HTTP code of the page saying so."""

    def __init__(self, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def sign_in(issuer: str, claims: dict[str, Any]) -> AbstractUser:
    """The user the claims (ID token and userinfo, checked by portal.oidc) are of, roles set."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SignInRefused("The identity provider sent no subject (sub) for you.", 400)
    groups = provider_groups(claims.get(settings.PORTAL_OIDC_GROUPS_CLAIM))
    granted = roles_from(groups)
    with transaction.atomic():
        identity = (SsoIdentity.objects.select_for_update().select_related("user")
                    .filter(issuer=issuer, subject=subject).first())
        if identity is None and not granted:
            raise _no_role(claims, groups)  # nobody is made for a person with no role
        if identity is None:
            identity = SsoIdentity(issuer=issuer, subject=subject, user=_new_user(claims))
        user = identity.user
        changed = _set_roles(user, granted)
        identity.groups, identity.roles, identity.synced_at = groups, granted, timezone.now()
        identity.save()
        if changed:
            audit.record(user, Interface.WEB, "sso_roles", groups=groups, **changed)
    if not user.is_active:
        raise SignInRefused("Your portal account is deactivated: ask a portal admin.")
    if not granted:
        raise _no_role(claims, groups)
    return user


def provider_groups(value: Any) -> list[str]:
    """The groups claim as a sorted list (a provider may send one group as a string)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return sorted({group for group in value if isinstance(group, str) and group})


def roles_from(groups: list[str]) -> dict[str, list[str]]:
    """{role: [the groups granting it]} through PORTAL_OIDC_ROLE_MAP."""
    granted: dict[str, list[str]] = {}
    for group in groups:
        role = settings.PORTAL_OIDC_ROLE_MAP.get(group)
        if role in roles.ROLES:
            granted.setdefault(role, []).append(group)
    return granted


def _set_roles(user: AbstractUser, granted: dict[str, list[str]]) -> dict[str, list[str]]:
    """Make the user's role groups exactly `granted`'s; the admin role also opens the admin
    site (is_staff). Returns {"added": [...], "removed": [...]} when anything changed."""
    held = set(user.groups.filter(name__in=roles.ROLES).values_list("name", flat=True))
    added, removed = sorted(set(granted) - held), sorted(held - set(granted))
    user.groups.remove(*Group.objects.filter(name__in=removed))
    user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in added))
    staff = roles.ADMIN in granted
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])
    return {"added": added, "removed": removed} if added or removed else {}


def _new_user(claims: dict[str, Any]) -> AbstractUser:
    users = get_user_model()
    name = _username(claims)
    email = claims.get("email") if isinstance(claims.get("email"), str) else ""
    full = claims.get("name") if isinstance(claims.get("name"), str) else ""
    first, _, last = full.partition(" ")
    # No usable password: this person signs in through the provider only.
    return users.objects.create_user(name, email=email, first_name=first[:150],
                                     last_name=last[:150])


def _username(claims: dict[str, Any]) -> str:
    """The provider's preferred name; suffixed when a local account (or another subject) has it
    already: a name is never a way into someone else's account."""
    wanted = next((claims[key] for key in ("preferred_username", "email", "sub")
                   if isinstance(claims.get(key), str) and claims[key]), "")
    base = NOT_IN_USERNAME.sub("-", wanted)[:USERNAME_CHARS - 7] or "sso"
    users = get_user_model()
    if not users.objects.filter(username=base).exists():
        return base
    digest = hashlib.sha256(f"{claims['sub']}".encode()).hexdigest()
    return f"{base}-{digest[:6]}"


def _no_role(claims: dict[str, Any], groups: list[str]) -> SignInRefused:
    who = claims.get("preferred_username") or claims.get("email") or claims.get("sub")
    mapped = ", ".join(f"{group} ({role})" for group, role in
                       sorted(settings.PORTAL_OIDC_ROLE_MAP.items())) or "none"
    theirs = ", ".join(groups) or "no groups at all"
    return SignInRefused(
        f"The identity provider signed you in as {who}, but none of your groups gives a role "
        f"in the portal. Your groups: {theirs}. Groups that do: {mapped}. Ask to be added to "
        "one of them, then sign in again.")
