"""Embedded report storage: Django file storage under PORTAL_VAR_DIR/reports."""

from pathlib import Path

from django.conf import settings
from django.urls import reverse

from environments.backends import BackendError
from environments.backends.storage import Reports


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
        return settings.PORTAL_BASE_URL + reverse("report", args=[key])
