"""DB pool on a real MariaDB: time to grow the pool by 50 slots, and lease latency under 20
concurrent workers (each leases a slot, checks it as the slot's user, gives it back; repeat).

    .venv/bin/python benchmarks/pool.py [--portal-db sqlite|mariadb] [--rounds 10]

The portal's own database is SQLite by default (as `make run`), or a database on the same
MariaDB server (as production would use a server database).
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.mariadb import MariaDB  # noqa: E402

WORKERS = int(os.environ.get("BENCH_WORKERS", "20"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def configure(tmp: Path, server: MariaDB, portal_db: str) -> None:
    os.environ.update({
        "PORTAL_DEBUG": "1", "PORTAL_VAR_DIR": str(tmp / "var"), "PORTAL_DB_POOL": "mysql",
        "PORTAL_POOL_MYSQL_URL": server.admin_url, "DJANGO_SETTINGS_MODULE": "portal.settings",
    })
    if portal_db == "mariadb":
        import pymysql

        with pymysql.connect(unix_socket=server.socket, user="root", autocommit=True) as db:
            db.cursor().execute("CREATE DATABASE portal CHARACTER SET utf8mb4")
        pymysql.install_as_MySQLdb()
        os.environ["DATABASE_URL"] = server.admin_url + "portal"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def lease_loop(environment, rounds: int, timings: list[float], errors: list[str]) -> None:
    from django.db import connection

    from environments import dbpool
    from environments.backends import get

    try:
        for _ in range(rounds):
            started = time.perf_counter()
            slot = dbpool.lease_slot(environment)
            if slot is None:
                errors.append("no slot")
                continue
            get("pool").check(slot.name, dbpool.slot_connection(slot).password)
            timings.append(time.perf_counter() - started)
            dbpool.unlease_slot(slot)
    except Exception as exc:  # a benchmark reports, it does not stop at the first error
        errors.append(repr(exc))
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--portal-db", choices=("sqlite", "mariadb"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = MariaDB(Path(tmp) / "mariadb")
        server.start()
        try:
            configure(Path(tmp), server, args.portal_db)
            run(args.rounds, args.portal_db)
        finally:
            server.remove()


def run(rounds: int, portal_db: str) -> None:
    from django.utils import timezone

    from environments import dbpool, demo
    from environments.models import Environment

    started = time.perf_counter()
    dbpool.ensure_pool_size(50)
    grow = time.perf_counter() - started

    project = demo.register(demo.build_repository(Path(os.environ["PORTAL_VAR_DIR"]) / "repo"))
    environments = [
        Environment.objects.create(project=project, branch=f"bench-{i}", env_key=f"{i:032x}",
                                   queued_at=timezone.now())
        for i in range(WORKERS)
    ]
    timings: list[float] = []
    errors: list[str] = []
    threads = [threading.Thread(target=lease_loop, args=(e, rounds, timings, errors))
               for e in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"portal database: {portal_db}; pool server: MariaDB on loopback")
    print(f"grow pool 0 -> 50 slots: {grow:.2f}s ({grow / 50 * 1000:.0f} ms a slot)")
    p50, p95 = (percentile(timings, q) * 1000 for q in (0.5, 0.95))
    print(f"lease + check as slot user, {WORKERS} concurrent workers, {len(timings)} leases: "
          f"p50 {p50:.1f} ms  p95 {p95:.1f} ms  mean {statistics.mean(timings) * 1000:.1f} ms")
    if errors:
        print(f"errors: {len(errors)} (first: {errors[0]})")


if __name__ == "__main__":
    main()
