"""Runs a branch's seed SQL in one SQLite file: `python sqlite_seed.py FILE < seed.sql`;
with --restore, a dataset's dump into a new file (no journal: a failed restore is thrown away).

Standalone (the standard library only), so it runs in the sandbox with nothing of the portal
around it. Whatever runs it, the script may touch no other file: ATTACH (and VACUUM INTO, which
writes through an attached database) is refused; Python's sqlite3 leaves
load_extension() off.
"""

import sqlite3
import sys

REFUSED = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}


def _authorize(action: int, *args: object) -> int:
    return sqlite3.SQLITE_DENY if action in REFUSED else sqlite3.SQLITE_OK


def seed(path: str, sql: str, restore: bool = False) -> None:
    db = sqlite3.connect(path)
    try:
        if restore:
            # A dump's inserts, each in its own transaction, would be synced one by one.
            db.execute("PRAGMA journal_mode = OFF")
            db.execute("PRAGMA synchronous = OFF")
        db.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        db.set_authorizer(_authorize)
        db.executescript(sql)
    finally:
        db.close()


if __name__ == "__main__":
    try:
        seed(sys.argv[-1], sys.stdin.read(), restore="--restore" in sys.argv[1:-1])
    except (sqlite3.Error, UnicodeDecodeError) as exc:
        sys.exit(str(exc))
