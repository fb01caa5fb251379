"""Secrets kept in the portal database (DB slot passwords) are sealed with a key derived from
PORTAL_SECRET_KEY: a copy of the database alone does not give them away."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"preview-portal/sealed\0" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode() if secret else ""


def unseal(sealed: str) -> str:
    if not sealed:
        return ""
    try:
        return _fernet().decrypt(sealed.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "a sealed secret does not open with this PORTAL_SECRET_KEY (was it changed?); "
            "resetting the slot issues a new one"
        ) from exc
