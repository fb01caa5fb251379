"""OpenID Connect sign-in through mozilla-django-oidc: the authorization code flow with state,
nonce and PKCE (S256), the ID token's signature checked against the provider's published keys
and its issuer and audience against our settings. The provider's endpoints come from its
discovery document (PORTAL_OIDC_ISSUER), read at the first sign-in and kept for an hour.
Who the person is and which roles they get: environments.sso."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from environments import sso
from environments.backends import BackendError

DISCOVERY_SECONDS = 3600
TIMEOUT = 10


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    userinfo_endpoint: str
    jwks_uri: str


def enabled() -> bool:
    return bool(settings.PORTAL_OIDC_ISSUER)


def name() -> str:
    """What the login page's button calls the provider."""
    return settings.PORTAL_OIDC_NAME or urlsplit(settings.PORTAL_OIDC_ISSUER).hostname or ""


def provider() -> Provider:
    """The provider's endpoints, from its discovery document; BackendError when unreachable."""
    issuer = settings.PORTAL_OIDC_ISSUER
    key = f"oidc-discovery:{issuer}"
    found = cache.get(key)
    if found is None:
        found = _discover(issuer)
        cache.set(key, found, DISCOVERY_SECONDS)
    return Provider(**found)


def _discover(issuer: str) -> dict[str, str]:
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise BackendError(f"cannot read {url}: {exc}", retryable=True) from exc
    fields = ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
              "jwks_uri")
    missing = [f for f in fields if not isinstance(document.get(f), str)]
    if missing:
        raise BackendError(f"{url} has no {', '.join(missing)}", retryable=False)
    if document["issuer"] != issuer:
        # OpenID Connect Discovery 4.3: tokens would name another issuer than the one trusted.
        raise BackendError(f"{url} names issuer {document['issuer']!r}, not PORTAL_OIDC_ISSUER "
                           f"{issuer!r}", retryable=False)
    return {f: document[f] for f in fields}


class Backend(OIDCAuthenticationBackend):
    """Signs in only from the callback (with the nonce and PKCE verifier of its state); the
    person is found by issuer and subject, never by a name or an e-mail address."""

    def __init__(self) -> None:
        # The library's own reads its endpoints from settings here, on every request that loads
        # a signed-in user; ours come from discovery, at sign-in only.
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_RP_CLIENT_SECRET = settings.OIDC_RP_CLIENT_SECRET
        self.OIDC_RP_SIGN_ALGO = settings.OIDC_RP_SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None
        self.UserModel = get_user_model()

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> AbstractBaseUser | None:
        if request is None or "nonce" not in kwargs or not enabled():
            return None  # a password login, or the admin's: not ours
        try:
            found = provider()
        except BackendError as exc:
            raise sso.SignInRefused(f"The identity provider cannot be reached: {exc}", 502) from exc
        self.provider = found
        self.OIDC_OP_TOKEN_ENDPOINT = found.token_endpoint
        self.OIDC_OP_USER_ENDPOINT = found.userinfo_endpoint
        self.OIDC_OP_JWKS_ENDPOINT = found.jwks_uri
        try:
            return super().authenticate(request, **kwargs)
        except requests.HTTPError as exc:
            raise sso.SignInRefused(
                f"The identity provider refused this sign-in: {_provider_error(exc)}. A sign-in "
                "link works once: start again.", 400) from exc
        except requests.RequestException as exc:
            raise sso.SignInRefused(
                f"The identity provider cannot be reached: {exc}", 502) from exc
        except (SuspiciousOperation, jwt.PyJWTError) as exc:
            raise sso.SignInRefused(f"The identity provider's answer is not valid: {exc}",
                                    400) from exc

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The library checks the signature, expiry and nonce; the issuer and audience too."""
        payload: dict[str, Any] = super().verify_token(token, **kwargs)
        if payload.get("iss") != self.provider.issuer:
            raise SuspiciousOperation(f"the ID token is from {payload.get('iss')!r}")
        audience = payload.get("aud")
        if self.OIDC_RP_CLIENT_ID not in (audience if isinstance(audience, list) else [audience]):
            raise SuspiciousOperation("the ID token is not meant for this portal (aud)")
        return payload

    def get_or_create_user(self, access_token: str, id_token: str,
                           payload: dict[str, Any]) -> AbstractBaseUser:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        if userinfo.get("sub") != payload.get("sub"):
            # OpenID Connect Core 5.3.2: userinfo of someone else must not be used.
            raise SuspiciousOperation("the userinfo is not of the ID token's subject")
        return sso.sign_in(self.provider.issuer, {**payload, **userinfo})


def _provider_error(exc: requests.HTTPError) -> str:
    """The OAuth error the token endpoint answered (RFC 6749 5.2), e.g. invalid_grant."""
    try:
        body = exc.response.json() if exc.response is not None else {}
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    description = body.get("error_description") if isinstance(body, dict) else None
    return ": ".join(str(part) for part in (error, description) if part) or str(exc)
