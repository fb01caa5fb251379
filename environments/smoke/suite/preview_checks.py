"""The built-in smoke checks, run by pytest in a subprocess against one environment.

The portal resolves every case before the run (PREVIEW_SMOKE_CASES: URLs filled in, the
attempt's marker in place), so this file needs nothing but the standard library, pytest and
PyMySQL, and reads the same way in the report as in the portal."""

import json
import os
import sqlite3
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

CASES: dict[str, list[dict[str, Any]]] = json.loads(os.environ["PREVIEW_SMOKE_CASES"])
TIMEOUT_SECONDS = 10
SHOWN = 300  # characters of an answer quoted in a failure


def cases(kind: str) -> list[Any]:
    found = CASES.get(kind, [])
    if not found:
        reason = f"no {kind} check is configured for this project"
        return [pytest.param(None, id="not configured", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(case, id=case["name"]) for case in found]


def answer(case: dict[str, Any]) -> tuple[int, str]:
    assert case["url"], f"{case['component']} has no URL in this environment (is it exposed?)"
    body = None if case.get("json") is None else json.dumps(case["json"]).encode()
    request = urllib.request.Request(
        case["url"], data=body, method=case["method"],
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:  # URLError included: refused, timed out, no route, no name
        # The portal tells "the app is unreachable" from "the app answers wrongly" by these
        # words (runner.NO_ANSWER).
        reason = getattr(exc, "reason", exc)
        pytest.fail(f"{case['method']} {case['url']}: no HTTP answer ({reason})")


def expect(case: dict[str, Any]) -> None:
    status, text = answer(case)
    wanted = case.get("status")
    where = f"{case['method']} {case['url']}"
    ok = status == wanted if wanted else 200 <= status < 300
    assert ok, f"{where} answered HTTP {status}, expected {wanted or '2xx'}: {text[:SHOWN]}"
    contains = case.get("contains")
    assert not contains or contains in text, (
        f"{where} answered without {contains!r}: {text[:SHOWN]}"
    )


def count_rows(table: str, column: str, value: str) -> int:
    """Straight into the environment's own database, not through the app."""
    dsn = os.environ["PREVIEW_DATABASE_URL"]
    # Table and column names are checked by the portal (plain SQL names); the value is bound.
    if dsn.startswith("sqlite:///"):
        path = dsn.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            query = f"SELECT COUNT(*) FROM {table} WHERE {column} = ?"  # noqa: S608
            return int(db.execute(query, (value,)).fetchone()[0])
    import pymysql

    url = urlparse(dsn)
    db = pymysql.connect(
        host=url.hostname, port=url.port or 3306, user=unquote(url.username or ""),
        password=unquote(url.password or ""), database=url.path.lstrip("/"),
        connect_timeout=TIMEOUT_SECONDS,
    )
    try:
        with db.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} = %s", (value,))  # noqa: S608
            return int(cursor.fetchone()[0])
    finally:
        db.close()


@pytest.mark.parametrize("case", cases("health"))
def test_health(case: dict[str, Any]) -> None:
    expect(case)


@pytest.mark.parametrize("case", cases("login"))
def test_login(case: dict[str, Any]) -> None:
    expect(case)


@pytest.mark.parametrize("case", cases("database"))
def test_database_row_written_by_the_app_is_in_its_slot(case: dict[str, Any]) -> None:
    expect(case)
    table, column, marker = case["table"], case["column"], case["marker"]
    found = count_rows(table, column, marker)
    database = os.environ.get("PREVIEW_DB_NAME", "?")
    assert found, (
        f"no row with {column} = {marker!r} in {table} of this environment's database "
        f"{database}: the app wrote somewhere else"
    )


@pytest.mark.parametrize("case", cases("integrations"))
def test_integration(case: dict[str, Any]) -> None:
    expect(case)


@pytest.mark.parametrize("case", cases("components"))
def test_component_to_component(case: dict[str, Any]) -> None:
    expect(case)
