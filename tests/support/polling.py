"""Waiting in a test for something a server or a worker does in its own time."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T], timeout: float = 180,
               interval: float = 0.5) -> T:
    """check()'s first truthy answer; fails naming `what` when none came within `timeout`."""
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)
    return found
