"""A local HTTP server that answers the Slack Web API methods the portal uses like Slack does,
and records what it was sent."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.web import serving

TOKEN = "xoxb-test-token"
CHANNEL_ID = "C0PREVIEWS"


@dataclass
class FakeSlack:
    url: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # Method -> what to answer instead of success: (HTTP status, Slack error).
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)

    def payloads(self, method: str) -> list[dict[str, Any]]:
        return [payload for called, payload in self.calls if called == method]


def handler_for(slack: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            method = self.path.rsplit("/", 1)[-1]
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            slack.calls.append((method, payload))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._answer(200, {"ok": False, "error": "not_authed"})
            elif method in slack.failures:
                status, error = slack.failures[method]
                self._answer(status, {"ok": False, "error": error})
            else:
                ts = payload.get("ts") or f"1700000000.{len(slack.calls):06d}"
                self._answer(200, {"ok": True, "channel": CHANNEL_ID, "ts": ts,
                                   "message": {"text": payload.get("text")}})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "30")
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def text_of(payload: dict[str, Any]) -> str:
    return json.dumps(payload["blocks"], ensure_ascii=False)


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    with serving(server) as url:
        fake = FakeSlack(url=f"{url}/api/")
        server.RequestHandlerClass = handler_for(fake)
        yield fake
