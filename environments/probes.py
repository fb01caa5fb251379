"""Small network probes used by readiness waits and smoke checks."""

import socket
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    ok: bool
    summary: str
    body: bytes = b""
    reached: bool = True  # False: no HTTP answer at all (name unknown, refused, timed out)


def get(url: str, timeout: float = 2.0) -> Answer:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            body = response.read(64 * 1024)
            return Answer(200 <= response.status < 300, f"HTTP {response.status}", body)
    except urllib.error.HTTPError as exc:
        return Answer(False, f"HTTP {exc.code}", exc.read(64 * 1024))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(False, f"no answer ({reason})", reached=False)


def connect(host: str, port: int, timeout: float = 1.0) -> Answer:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return Answer(True, "connection accepted")
    except OSError as exc:
        return Answer(False, f"connection refused ({exc})")
