"""Whole portal databases on the MySQL server of DATABASE_URL (scripts/parity-tests), for tests
that copy a prepared portal per case: what copying the SQLite file does on the default."""

import itertools
import os
import subprocess
from typing import Any

import dj_database_url
import pymysql

_names = itertools.count(1)


def server() -> dict[str, Any] | None:
    """The connection settings of DATABASE_URL when it is MySQL, else None (SQLite files)."""
    url = os.environ.get("DATABASE_URL", "")
    return dj_database_url.parse(url) if url.startswith("mysql") else None


def _url(db: dict[str, Any], name: str) -> str:
    return f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{name}"


def _client_args(db: dict[str, Any]) -> list[str]:
    return [f"--host={db['HOST']}", f"--port={db['PORT']}", f"--user={db['USER']}",
            f"--password={db['PASSWORD']}"]


def create(db: dict[str, Any], purpose: str) -> tuple[str, str]:
    """A new empty utf8mb4 database: (name, DATABASE_URL)."""
    name = f"{purpose}_{os.getpid()}_{next(_names)}"
    connection = pymysql.connect(host=db["HOST"], port=int(db["PORT"]), user=db["USER"],
                                 password=db["PASSWORD"], autocommit=True)
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    connection.close()
    return name, _url(db, name)


def copy(db: dict[str, Any], source: str, purpose: str) -> str:
    """A new database holding what `source` holds (mariadb-dump | mariadb): its DATABASE_URL."""
    name, url = create(db, purpose)
    dump = subprocess.run(["mariadb-dump", *_client_args(db), "--single-transaction", source],
                          capture_output=True, check=True, timeout=120).stdout
    subprocess.run(["mariadb", *_client_args(db), name], input=dump, capture_output=True,
                   check=True, timeout=120)
    return url
