"""Credentials kept out of what the portal shows or logs: pages, the API, run logs, Slack and
pull-request comments are read by people who may not hold them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # git.py uses this module, and may be loaded before Django's apps
    from environments.models import Project

MASK = "****"
# Shorter values are flags, levels and ports ("1", "debug", "8080"), not secrets: masking them
# would garble every number and word of a message, and they are guessed anyway.
MIN_SECRET = 8
# user[:password]@ after a scheme; git and curl split at the last "@" before the host.
_USERINFO = re.compile(r"(?<=://)[^/\s'\"]*@")


def userinfo(text: str) -> str:
    """`text` (a URL, or a message quoting one) without the credentials of its URLs, e.g. the
    token of https://x-access-token:TOKEN@github.com/acme/shop.git."""
    return _USERINFO.sub("", text)


def secret_values(project: Project, db_password: str) -> list[str]:
    """What an environment's output must not show: its DB password and its components' env var
    values (the API shows their names only)."""
    return [db_password,
            *(str(value) for c in project.components.all() for value in c.env_vars.values())]


def secrets(text: str, values: Iterable[str]) -> str:
    """`text` with each of `values` masked, longest first: one may hold another."""
    for value in sorted({v for v in values if len(v) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
