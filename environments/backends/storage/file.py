"""Embedded report storage: files under PORTAL_VAR_DIR/reports, served by the portal's `report`
view to whoever holds a link signed with the portal's secret key (django.core.signing)."""

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing

from environments import links
from environments.backends import BackendError
from environments.backends.storage import Reports

SEP = ":"  # between the key, the time it was signed and the signature


class FileReports(Reports):
    def __init__(self) -> None:
        self.root = Path(settings.VAR_DIR) / "reports"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise BackendError(f"report key {key!r} leaves the report directory")
        return path

    def save(self, key: str, content: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(content)
        tmp.replace(path)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise BackendError(f"no report {key}") from exc

    def url(self, key: str) -> str:
        signature = _signer().sign(key).removeprefix(key + SEP)
        query = urlencode({"signature": signature})
        return links.page_url("report", key, query=query)

    def link_valid(self, key: str, signature: str) -> bool:
        """The link to `key` was signed by this portal less than PORTAL_REPORT_LINK_HOURS
        ago."""
        try:
            _signer().unsign(f"{key}{SEP}{signature}",
                             max_age=timedelta(hours=settings.PORTAL_REPORT_LINK_HOURS))
        except signing.BadSignature:  # SignatureExpired included
            return False
        return True


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt="preview-portal.report-link", sep=SEP)
