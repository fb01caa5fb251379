"""Datasets on a real MariaDB (issue 14): a generated dump of about 100 MB restored into its
template, then copied into slots. Prints the restore time of the dump per method, the re-warm
of 10 slots with a new version, and lease p50/p95 of a warm slot against an empty slot (goal:
the same, <= 50 ms).

    .venv/bin/python benchmarks/datasets.py [--mb 100] [--slots 10] [--leases 50]

Methods measured for a copy of the template into a slot:
  the pool's   the schema by mariadb-dump | mariadb, the rows by INSERT ... SELECT as the slot's
               user (granted SELECT on the template for the copy), the triggers last
  dump|load    mariadb-dump as the template's user | mariadb as the slot's user
  tab+LOAD     mariadb-dump --tab (the server writes the files: needs FILE, the pool admin's),
               then the schema and LOAD DATA LOCAL INFILE as the slot's user
  INSERT..SELECT  rows only (CREATE TABLE LIKE loses foreign keys), as the server's root
  mydumper     mydumper as the template's user (no locks: it has no RELOAD), myloader as the
               slot's user, 2 threads each (Debian package mydumper; skipped without it)
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from pool import configure, percentile  # benchmarks/pool.py: the same MariaDB set-up

from tests.support.mariadb import MariaDB

ROW_BYTES = 190  # of the generated dump, with names padded to 160 characters


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=100)
    parser.add_argument("--slots", type=int, default=10)
    parser.add_argument("--leases", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = MariaDB(Path(tmp) / "mariadb")
        server.start()
        try:
            configure(Path(tmp), server, "sqlite")
            from django_q.conf import Conf

            Conf.SYNC = True  # background tasks run inline: their time is measured here
            run(args, server, Path(tmp))
        finally:
            server.remove()


def run(args: argparse.Namespace, server: MariaDB, tmp: Path) -> None:
    from environments import datasets, dbpool, demo
    from environments.models import Interface

    rows = int(args.mb * 1e6 / ROW_BYTES)
    dump = demo.dataset_sql("mysql", rows=rows, name_chars=160)
    print(f"dump: {len(dump) / 1e6:.0f} MB, {rows} rows; pool server: MariaDB on loopback; "
          f"portal database: SQLite")
    dbpool.ensure_pool_size(args.slots + 2)
    repository = demo.build_repository(tmp / "repo")
    project, blank = demo.register(repository), demo.register(repository, name="blank")

    version = datasets.upload(project, dump, actor=None, interface=Interface.CLI)
    version.refresh_from_db()
    print(f"restore into the template (mariadb client as the template's user, sandboxed): "
          f"{version.restore_seconds:.1f} s [{version.state}]")
    copies(server, version.pk)

    project.warm_slots = args.slots
    project.save()
    print(f"warm {args.slots} slots (one worker, one after the other): "
          f"{timed(datasets.warm):.1f} s")
    settle(server)
    leases({f"warm slot, {len(dump) / 1e6:.0f} MB dataset": project,
            "empty slot, no dataset": blank}, args.leases)

    newer = dump + b"-- version 2\n"
    rewarm = timed(lambda: datasets.upload(project, newer, actor=None,
                                           interface=Interface.CLI))
    print(f"new version: template restore + re-warm of {args.slots} free slots: {rewarm:.1f} s "
          f"({describe()})")


def settle(server: MariaDB) -> None:
    """Let the server write out the copies' pages first: the leases would wait on its disk."""
    import pymysql

    deadline = time.monotonic() + 120
    with pymysql.connect(unix_socket=server.socket, user="root") as db:
        cursor = db.cursor()
        while time.monotonic() < deadline:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
            if int(cursor.fetchone()[1]) < 100:
                return
            time.sleep(1)


def describe() -> str:
    from django.db.models import Count

    from environments.models import DbSlot

    groups = DbSlot.objects.values("state", "dataset__number").annotate(n=Count("pk"))
    return ", ".join(f"{g['n']} {g['state']}" + (f" v{g['dataset__number']}"
                                                  if g["dataset__number"] else "")
                     for g in groups.order_by("state", "dataset__number"))


def copies(server: MariaDB, version_id: int) -> None:
    from environments import crypto, dbpool
    from environments.backends import get
    from environments.models import DatasetVersion, DbSlot

    pool = get("pool")
    version = DatasetVersion.objects.get(pk=version_id)
    template, secret = pool.template(version_id), crypto.unseal(version.template_secret)
    slot = DbSlot.objects.get(name=dbpool.slot_name(1))
    slot_secret = crypto.unseal(slot.secret)

    def pools() -> None:
        pool.copy_template(template, secret, slot.name, slot_secret, lambda _line: None)

    print(f"copy template -> slot, the pool's: {timed(pools):.1f} s")
    print(f"copy template -> slot, dump|load: "
          f"{timed(lambda: dump_load(server, template, secret, slot.name, slot_secret)):.1f} s")
    if shutil.which("mydumper"):
        print(f"copy template -> slot, mydumper/myloader: "
              f"{timed(lambda: my_dumper(server, template, secret, slot.name, slot_secret)):.1f} s")
    print(f"copy template -> slot, tab+LOAD: "
          f"{timed(lambda: tab_load(server, template, slot.name, slot_secret)):.1f} s")
    print(f"copy template -> slot, INSERT..SELECT: "
          f"{timed(lambda: insert_select(server, template, slot.name)):.1f} s")
    slot_reset(slot)


def dump_load(server: MariaDB, template: str, secret: str, slot: str, slot_secret: str) -> None:
    subprocess.run(["mariadb", *login(server, slot, slot_secret), "-e",
                    f"DROP DATABASE `{slot}`; CREATE DATABASE `{slot}`"], check=True)
    dump = subprocess.Popen(["mariadb-dump", *login(server, template, secret), template],
                            stdout=subprocess.PIPE)
    subprocess.run(["mariadb", *login(server, slot, slot_secret), slot], stdin=dump.stdout,
                   check=True)
    dump.wait()


def login(server: MariaDB, user: str, password: str) -> list[str]:
    return ["--no-defaults", "--host=127.0.0.1", f"--port={server.port}", f"--user={user}",
            f"--password={password}"]


def my_dumper(server: MariaDB, template: str, secret: str, slot: str, slot_secret: str) -> None:
    def login(user: str, password: str) -> list[str]:
        return ["-h", "127.0.0.1", "-P", str(server.port), "-u", user, "-p", password,
                "-t", "2", "-v", "1"]

    with tempfile.TemporaryDirectory() as files:
        subprocess.run(["mydumper", *login(template, secret), "-B", template, "-k",
                        "-o", files], check=True)
        subprocess.run(["myloader", *login(slot, slot_secret), "-B", slot, "-o",
                        "-d", files], check=True)


def tab_load(server: MariaDB, template: str, slot: str, secret: str) -> None:
    with tempfile.TemporaryDirectory() as files:
        os.chmod(files, 0o777)  # the server writes the data files
        subprocess.run(["mariadb-dump", "--no-defaults", f"--socket={server.socket}", "-uroot",
                        f"--tab={files}", template], check=True)
        client = ["mariadb", *login(server, slot, secret), "--database", slot]
        subprocess.run([*client, "-e", f"DROP DATABASE `{slot}`; CREATE DATABASE `{slot}`"],
                       check=True)
        for schema in Path(files).glob("*.sql"):
            subprocess.run(client, stdin=schema.open("rb"), check=True)
        data = sorted(str(p) for p in Path(files).glob("*.txt"))
        subprocess.run(["mariadb-import", *login(server, slot, secret), "--local", slot, *data],
                       check=True,
                       capture_output=True)


def insert_select(server: MariaDB, template: str, slot: str) -> None:
    import pymysql

    with pymysql.connect(unix_socket=server.socket, user="root", autocommit=True) as db:
        cursor = db.cursor()
        cursor.execute(f"DROP DATABASE `{slot}`")
        cursor.execute(f"CREATE DATABASE `{slot}`")
        cursor.execute("SELECT table_name FROM information_schema.tables "
                       "WHERE table_schema = %s AND table_type = 'BASE TABLE'", (template,))
        for (table,) in cursor.fetchall():
            cursor.execute(f"CREATE TABLE `{slot}`.`{table}` LIKE `{template}`.`{table}`")
            cursor.execute(f"INSERT INTO `{slot}`.`{table}` SELECT * FROM `{template}`.`{table}`")


def slot_reset(slot) -> None:
    from environments import crypto
    from environments.backends import get
    from environments.models import DbSlot, SlotState

    secret = get("pool").reset(slot.name)
    DbSlot.objects.filter(pk=slot.pk).update(state=SlotState.FREE, dataset=None,
                                             secret=crypto.seal(secret), seeded=False)


def leases(kinds: dict, count: int) -> None:
    """lease_db's part before the seed: the project's current dataset, a lease, a check as the
    slot's user, the dataset (nothing to do for a warm slot); the slot is then given back as
    it was. Each kind in turn, so that both see the same load on the machine."""
    from environments import datasets, dbpool
    from environments.backends import get
    from environments.models import Environment

    environments = {
        what: Environment.objects.create(project=project, branch="bench", status="provisioning",
                                         env_key=f"{hash(what) & (2**128 - 1):032x}")
        for what, project in kinds.items()}
    timings: dict[str, list[float]] = {what: [] for what in kinds}
    for _ in range(count):
        for what, environment in environments.items():
            started = time.perf_counter()
            version = datasets.current(environment.project)
            slot = dbpool.lease_slot(environment, version.pk if version else None)
            get("pool").check(slot.name, dbpool.slot_connection(slot).password)
            datasets.fill_leased(slot, environment.project, lambda _line: None)
            timings[what].append(time.perf_counter() - started)
            dbpool.unlease_slot(slot)
    for what, measured in timings.items():
        p50, p95 = (percentile(measured, q) * 1000 for q in (0.5, 0.95))
        print(f"lease of a {what}: p50 {p50:.1f} ms  p95 {p95:.1f} ms ({count} leases)")


if __name__ == "__main__":
    main()
