"""Notifications: one message per run, updated in place as the run moves on."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Notice:
    project: str
    branch: str
    status: str
    kind: str
    portal_url: str
    urls: dict[str, str] = field(default_factory=dict)
    database: str = ""
    report_url: str = ""
    detail: str = ""


class Notifier(ABC):
    @abstractmethod
    def send(self, notice: Notice, previous_ref: str = "") -> str:
        """Post the notice, or update the message `previous_ref`; return the message's ref."""
