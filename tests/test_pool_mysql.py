"""The mysql DB pool against a real MariaDB server: lease, reset, resize, isolation, outages."""

import json
import threading
import urllib.request
from datetime import timedelta

import pymysql
import pytest
from django.db import connection
from django.utils import timezone

from environments import crypto, dbpool, services
from environments.backends import BackendError, get
from environments.models import (
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    RunStatus,
    SlotState,
)
from environments.refused import Refused

pytestmark = pytest.mark.django_db(transaction=True)


def connect_as(server, slot: DbSlot, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=server.port, user=slot.name,
                           password=crypto.unseal(slot.secret), database=database or slot.name,
                           autocommit=True)


def queued_environments(project, count: int, first: int = 0) -> list[Environment]:
    now = timezone.now()
    return [
        Environment.objects.create(project=project, branch=f"b{i}", env_key=f"{i:032x}",
                                   queued_at=now + timedelta(microseconds=i))
        for i in range(first, first + count)
    ]


def test_a_slot_user_cannot_reach_another_slots_database(mysql_pool, demo_project):
    dbpool.ensure_pool_size(2)
    a, b = DbSlot.objects.order_by("name")
    with connect_as(mysql_pool, b) as db_b:
        db_b.cursor().execute("CREATE TABLE secrets (v TEXT)")

    with connect_as(mysql_pool, a) as db_a:
        cursor = db_a.cursor()
        with pytest.raises(pymysql.err.OperationalError) as read:
            cursor.execute(f"SELECT * FROM `{b.name}`.secrets")
        with pytest.raises(pymysql.err.OperationalError) as write:
            cursor.execute(f"CREATE TABLE `{b.name}`.intruder (v TEXT)")
    with pytest.raises(pymysql.err.OperationalError):
        connect_as(mysql_pool, a, database=b.name)

    assert read.value.args[0] == write.value.args[0] == 1142  # command denied


def test_a_released_slot_is_empty_reseeded_and_has_a_new_password(
        mysql_pool, demo_project, developer):
    dbpool.ensure_pool_size(1)
    first = services.launch(demo_project, "main", actor=developer, interface=Interface.CLI)
    first.refresh_from_db()
    assert first.status == EnvironmentStatus.READY, first.status_detail
    slot = DbSlot.objects.get()
    old_secret = slot.secret
    request = urllib.request.Request(first.urls["api"] + "items", data=b'{"name": "latte"}',
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).close()
    services.teardown(first, actor=developer, interface=Interface.CLI)

    second = services.launch(demo_project, "feature/checkout", actor=developer,
                             interface=Interface.CLI)
    slot.refresh_from_db()

    assert slot.environment == second and slot.secret != old_secret
    with connect_as(mysql_pool, slot) as db:
        cursor = db.cursor()
        cursor.execute("SHOW TABLES")
        tables = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT note FROM seed_info")
        assert cursor.fetchall() == (("seeded by the portal",),)
        cursor.execute("SELECT name FROM items")
        assert ("latte",) not in cursor.fetchall()  # it belonged to the previous lessee
    assert tables == {"seed_info", "items"}
    old = DbSlot(name=slot.name, secret=old_secret)
    with pytest.raises(pymysql.err.OperationalError):
        connect_as(mysql_pool, old)


def test_fifty_concurrent_leases_on_a_pool_of_twenty(mysql_pool, demo_project):
    dbpool.ensure_pool_size(20)
    environments = queued_environments(demo_project, 50)
    results: dict[int, str | None] = {}
    start = threading.Barrier(50)

    def lease(environment: Environment) -> None:
        start.wait()
        try:
            slot = dbpool.lease_slot(environment)
            results[environment.pk] = slot.name if slot else None
        finally:
            connection.close()

    threads = [threading.Thread(target=lease, args=(e,)) for e in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    leased = [name for name in results.values() if name]
    assert len(leased) == len(set(leased)) == 20
    assert sum(name is None for name in results.values()) == 30
    assert DbSlot.objects.filter(state=SlotState.LEASED).count() == 20
    oldest = {e.pk for e in environments[:20]}
    assert {pk for pk, name in results.items() if name} == oldest  # first come, first served


def test_shrinking_below_the_leased_slots_changes_nothing(mysql_pool, demo_project):
    dbpool.ensure_pool_size(3)
    for environment in queued_environments(demo_project, 2):
        dbpool.lease_slot(environment)
    before = list(DbSlot.objects.values_list("name", "state"))

    with pytest.raises(Refused) as refused:
        dbpool.resize_pool(1, actor=None, interface=Interface.CLI)

    assert refused.value.status == 409
    assert "2 slots are leased" in str(refused.value)
    assert list(DbSlot.objects.values_list("name", "state")) == before
    assert get("pool").existing() == {name for name, _ in before}


def test_shrinking_retires_free_slots_and_drops_their_databases(mysql_pool, demo_project):
    dbpool.ensure_pool_size(4)
    dbpool.lease_slot(queued_environments(demo_project, 1)[0])

    result = dbpool.resize_pool(2, actor=None, interface=Interface.CLI)

    prefix = dbpool.slot_name(0)[:-2]
    assert result["size"] == 2
    assert set(DbSlot.objects.exclude(state=SlotState.RETIRED).values_list("name", flat=True)) \
        == {f"{prefix}01", f"{prefix}02"}
    assert get("pool").existing() == {f"{prefix}01", f"{prefix}02"}


def test_an_interrupted_grow_finishes_when_run_again(mysql_pool, monkeypatch):
    pool = get("pool")
    real_create = pool.create
    calls = []

    def flaky_create(slot: str) -> str:
        calls.append(slot)
        if len(calls) == 3:
            raise BackendError("connection lost", retryable=True)
        return real_create(slot)

    monkeypatch.setattr(pool, "create", flaky_create)
    with pytest.raises(BackendError):
        dbpool.ensure_pool_size(5)
    assert DbSlot.objects.count() == 2
    monkeypatch.setattr(pool, "create", real_create)

    dbpool.ensure_pool_size(5)

    names = sorted(DbSlot.objects.values_list("name", flat=True))
    assert len(names) == len(set(names)) == 5
    assert pool.existing() == set(names)
    for slot in DbSlot.objects.all():
        connect_as(mysql_pool, slot).close()


def test_existing_databases_with_the_prefix_are_adopted(mysql_pool):
    get("pool").create(dbpool.slot_name(1))

    assert dbpool.ensure_pool_size(2) == 2
    assert DbSlot.objects.count() == 2


def test_a_dead_pool_server_fails_the_lease_cleanly_and_a_retry_works(
        mysql_pool, demo_project, developer):
    dbpool.ensure_pool_size(1)
    mysql_pool.stop()
    try:
        environment = services.launch(demo_project, "main", actor=developer,
                                      interface=Interface.CLI)
        environment.refresh_from_db()
        run = environment.runs.get()
        assert environment.status == EnvironmentStatus.FAILED
        assert run.status == RunStatus.FAILED
        assert environment.status_detail.startswith("lease_db failed: MySQL pool: check")
        assert "cannot connect" in environment.status_detail
        assert DbSlot.objects.get().state == SlotState.FREE  # no half slot kept
    finally:
        mysql_pool.start()

    services.redeploy(environment, actor=developer, interface=Interface.CLI)
    environment.refresh_from_db()

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert DbSlot.objects.get().environment == environment


def test_a_failed_reset_keeps_the_slot_out_of_rotation_until_it_succeeds(
        mysql_pool, demo_project):
    dbpool.ensure_pool_size(1)
    environment = queued_environments(demo_project, 1)[0]
    dbpool.lease_slot(environment)
    mysql_pool.stop()
    try:
        dbpool.release_slot(environment)  # the reset task runs inline and fails
        slot = DbSlot.objects.get()
        assert slot.state == SlotState.RESETTING
        assert "reset failed" in slot.error
        assert dbpool.lease_slot(queued_environments(demo_project, 1, first=1)[0]) is None
    finally:
        mysql_pool.start()

    assert dbpool.retry_failed_resets() == 1
    slot.refresh_from_db()
    assert (slot.state, slot.error) == (SlotState.FREE, "")


def test_the_environment_gets_its_slot_dsn_but_no_page_shows_the_password(
        mysql_pool, demo_project, developer, client):
    dbpool.ensure_pool_size(1)
    environment = services.launch(demo_project, "main", actor=developer, interface="cli")
    environment.refresh_from_db()
    slot = DbSlot.objects.get()
    password = crypto.unseal(slot.secret)
    client.force_login(developer)

    page = client.get(f"/environments/{environment.pk}").content.decode()
    rows = json.loads(urllib.request.urlopen(environment.urls["api"] + "items", timeout=5).read())

    assert slot.name in page
    assert password not in page and password not in slot.secret
    # The app reached its own MySQL database: the one row there is the smoke check's.
    assert [row["name"][:6] for row in rows] == ["smoke-"]


def test_resize_reports_only_what_it_changed(mysql_pool):
    dbpool.ensure_pool_size(4)

    results = [dbpool.resize_pool(n, actor=None, interface=Interface.CLI) for n in (3, 2, 2, 3)]

    assert [(r["size"], r["added"], r["retired"]) for r in results] == [
        (3, 0, 1), (2, 0, 1), (2, 0, 0), (3, 1, 0)]
