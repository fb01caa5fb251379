"""A project's smoke configuration (Project.smoke) and the cases it becomes for one attempt.

    {"login":        [{"component": "api", "method": "POST", "path": "/login",
                       "json": {...}, "status": 200, "contains": "token"}],
     "database":     [{"component": "api", "path": "/items", "json": {"name": "{marker}"},
                       "status": 201, "table": "items", "column": "name"}],
     "integrations": [{"name": "queue", "component": "api", "path": "/queue", ...}],
     "components":   [{"component": "web", "path": "/upstream", "contains": "api"}],
     "tests": "smoke",
     "image": "registry.example.com/acme/shop-smoke:1"}

`image` (kubernetes runtime): the smoke Jobs' image instead of PORTAL_SMOKE_IMAGE, with `python`,
pytest, pytest-html and pytest-metadata (PyMySQL for the database check).
`{marker}` becomes a value unique to the attempt, so the database check finds the row this
attempt wrote and nothing older. Without `status` any 2xx passes; `method` defaults to POST
when there is a `json` body, else GET.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from django.core.exceptions import ValidationError

REQUEST_KINDS = ("login", "database", "integrations", "components")
KEYS = (*REQUEST_KINDS, "tests", "image")
MARKER = "{marker}"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

Case = dict[str, Any]


def validate_smoke_config(value: object) -> None:
    problems = list(_problems(value))
    if problems:
        raise ValidationError("; ".join(problems))


def _problems(value: object) -> Iterator[str]:
    if not isinstance(value, dict):
        yield "the smoke configuration is a JSON object"
        return
    for key in sorted(set(value) - set(KEYS)):
        yield f"unknown key {key!r} (known: {', '.join(KEYS)})"
    if not isinstance(value.get("image", ""), str):
        yield "image: the smoke Jobs' image on Kubernetes (with python and pytest), as a string"
    tests = value.get("tests", "")
    if isinstance(tests, str) and tests.startswith("-"):
        # pytest would take it for one of its options (e.g. -p, which loads a plugin).
        yield "tests: a path, not a pytest option: it may not start with '-'"
    elif tests and not _inner_path(tests):
        yield "tests: a relative path inside the repository (a folder or file, not its root)"
    for kind in REQUEST_KINDS:
        requests = value.get(kind, [])
        if not isinstance(requests, list):
            yield f"{kind}: a list of requests"
            continue
        for index, request in enumerate(requests):
            yield from (f"{kind}[{index}]: {p}" for p in _request_problems(kind, request))


def _inner_path(path: object) -> bool:
    if not isinstance(path, str):
        return False
    parts = PurePosixPath(path).parts
    return bool(parts) and not PurePosixPath(path).is_absolute() and ".." not in parts \
        and parts != (".",)


def _request_problems(kind: str, request: object) -> Iterator[str]:
    if not isinstance(request, dict):
        yield "a JSON object"
        return
    if not isinstance(request.get("component"), str):
        yield "component: the name of the component to call"
    if not str(request.get("path", "")).startswith("/"):
        yield "path: starts with /"
    if not isinstance(request.get("status", 200), int):
        yield "status: an HTTP status code"
    if kind == "database":
        for field in ("table", "column"):
            if not IDENTIFIER.match(str(request.get(field, ""))):
                yield f"{field}: a plain SQL name (letters, digits, _)"


def cases(config: dict[str, Any], urls: dict[str, str], health: dict[str, list[str]],
          marker: str) -> dict[str, list[Case]]:
    """Every check of one attempt, with URLs resolved and the marker filled in."""
    found: dict[str, list[Case]] = {
        "health": [
            _case({"component": name, "path": path, "name": f"{name} {path}"}, urls, marker)
            for name, paths in health.items() for path in paths
        ]
    }
    for kind in REQUEST_KINDS:
        found[kind] = [_case(request, urls, marker) for request in config.get(kind, [])]
    return found


def _case(request: dict[str, Any], urls: dict[str, str], marker: str) -> Case:
    case = _filled(request, marker)
    method = case.get("method") or ("POST" if "json" in case else "GET")
    base = urls.get(case["component"])
    case |= {
        "method": method.upper(),
        "url": base.rstrip("/") + case["path"] if base else None,
        "marker": marker,
    }
    case.setdefault("name", f"{case['component']} {case['method']} {case['path']}")
    return case


def _filled(value: Any, marker: str) -> Any:
    if isinstance(value, str):
        return value.replace(MARKER, marker)
    if isinstance(value, list):
        return [_filled(v, marker) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, marker) for k, v in value.items()}
    return value
