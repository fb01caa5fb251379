"""Notifications: one message per run, updated in place as the run moves on."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Notice:
    """Where a run stands. `status` is the environment's; `finished` is False for the message
    posted as the run starts, True once the run has ended (in any way)."""

    project: str
    branch: str
    status: str
    kind: str
    portal_url: str
    finished: bool = True
    urls: dict[str, str] = field(default_factory=dict)
    database: str = ""
    report_url: str = ""
    detail: str = ""

    @property
    def headline(self) -> str:
        return self.status.replace("_", " ") if self.finished else f"{self.kind} started"


class Notifier(ABC):
    @abstractmethod
    def send(self, notice: Notice, previous_ref: str = "") -> str:
        """Post the notice, or update the message `previous_ref`; return the message's ref."""

    @abstractmethod
    def reply(self, text: str, thread_ref: str) -> None:
        """Post `text` in the thread of the message `thread_ref` (a ref send returned), or as
        a message of its own without one."""
