"""Reading settings from environment variables, failing early with the variable's name."""

import json
import os
import re

from django.core.exceptions import ImproperlyConfigured


def text(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip() or default


def flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1 or 0, not {raw!r}")


def number(name: str, default: float, minimum: float = 0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}")
    return value


def integer(name: str, default: int, minimum: int = 0) -> int:
    value = number(name, default, minimum)
    if value != int(value):
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}")
    return int(value)


def choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = text(name, default)
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def json_object(name: str, default: dict[str, str]) -> dict[str, str]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object")
    return {str(k): str(v) for k, v in value.items()}


def require(name: str, value: str, because: str) -> None:
    refuse_unless(bool(value), f"{name} must be set {because}")


def refuse_unless(condition: bool, message: str) -> None:
    if not condition:
        raise ImproperlyConfigured(message)


def matching(name: str, pattern: str, default: str) -> str:
    value = text(name, default)
    refuse_unless(bool(re.fullmatch(pattern, value)), f"{name} must match {pattern}, not {value!r}")
    return value
