"""What the tests need installed: `make test` installs it, so on CI a missing tool is a failure."""

import os

import pytest


def require_tool(ready: bool, what: str) -> None:
    """A missing service fails on CI (make test installs it) and skips elsewhere."""
    if ready:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is missing on CI: `make test` should have installed it")
    pytest.skip(f"{what} is not installed (make test installs it)")
