"""Plain HTTP from a test to a real server (the portal, a preview, a storage link), and
servers of the tests' own on loopback."""

import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from socketserver import BaseServer


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    """The body of a GET; a status other than 2xx raises urllib's HTTPError."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@contextmanager
def serving(server: BaseServer) -> Iterator[str]:
    """`server` answering on a thread until the block ends: its URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
