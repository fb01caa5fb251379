"""Report storage: smoke reports under deterministic keys, and links to them."""

from abc import ABC, abstractmethod


class Reports(ABC):
    @abstractmethod
    def save(self, key: str, content: bytes, content_type: str) -> None:
        """Store under `key`, replacing what is there (so a repeated step writes the same)."""

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def url(self, key: str) -> str:
        """An absolute link that opens the report without a portal session and expires after
        PORTAL_REPORT_LINK_HOURS, like a link pasted in Slack should."""

    def link_valid(self, key: str, signature: str) -> bool:
        """Whether the portal's report view may serve `key` to this link's holder: only for a
        backend whose links point at the portal."""
        return False
