"""Structured logs: one JSON object a line, carrying the environment and run being worked on
(set by the task that runs it), so every line of a run can be found, library lines included."""

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

_current: contextvars.ContextVar[dict[str, int]] = contextvars.ContextVar("portal_log_context")


@contextmanager
def context(**ids: int) -> Iterator[None]:
    token = _current.set({**_current.get({}), **ids})
    try:
        yield
    finally:
        _current.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _current.get({}).items():
            setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    FIELDS = ("environment", "run", "step")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({f: getattr(record, f) for f in self.FIELDS if hasattr(record, f)})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
