"""What every interface answers when the portal will not do what it was asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Refused(Exception):
    """A request the portal will not carry out; nothing was changed. `status` is the HTTP code."""

    message: str
    status: int = 400
    detail: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message
