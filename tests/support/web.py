"""Plain HTTP from a test to a real server (the portal, a preview, a storage link)."""

import urllib.request


def fetch(url: str, headers: dict[str, str] | None = None) -> bytes:
    """The body of a GET; a status other than 2xx raises urllib's HTTPError."""
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()
