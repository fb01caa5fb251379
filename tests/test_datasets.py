"""Datasets (issue 14): a project's SQL dump, versioned, restored once into a template and copied
into warm DB slots, so a launch gets realistic data with no restore on its path. On both pools,
with real dumps, a real HTTP server for the size limit, and the real MariaDB."""

import gzip
import hashlib
import io
import json
import re
import socket
import sqlite3
import urllib.request
from collections.abc import Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pymysql
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from environments import crypto, datasets, dbpool, demo, tokens
from environments.backends import get
from environments.models import (
    AuditEvent,
    DatasetState,
    DatasetVersion,
    DbSlot,
    Environment,
    EnvironmentStatus,
    Interface,
    Project,
    SlotState,
)
from tests.support.api_client import call
from tests.support.clients import client_for
from tests.support.mariadb import ADMIN_USER
from tests.support.runs import launch
from tests.support.web import serving

pytestmark = pytest.mark.django_db(transaction=True)

ROWS = 3000


def upload(project: Project, dump: bytes, actor=None) -> DatasetVersion:
    version = datasets.upload(project, dump, actor=actor, interface=Interface.CLI)
    version.refresh_from_db()
    return version


# The dataset's rows (the smoke checks add items of their own).
DATASET_ROWS = "SELECT COUNT(*) FROM items WHERE name LIKE '% #%'"


def slot_rows(slot: DbSlot, query: str = DATASET_ROWS) -> list[tuple]:
    """What the slot's database answers, asked as the slot's own user (or its file)."""
    database = get("pool").connection(slot.name, crypto.unseal(slot.secret))
    if database.url.startswith("sqlite"):
        with sqlite3.connect(database.url.removeprefix("sqlite:///")) as db:
            return db.execute(query).fetchall()
    connection = pymysql.connect(host="127.0.0.1", port=database.port, user=database.user,
                                 password=database.password, database=database.name,
                                 autocommit=True)
    with connection, connection.cursor() as cursor:
        cursor.execute(query)
        return [tuple(row) for row in cursor.fetchall()]


def states() -> dict[str, tuple[str, str | None]]:
    return {slot.name: (slot.state, str(slot.dataset) if slot.dataset else None)
            for slot in DbSlot.objects.select_related("dataset__project").order_by("name")}


def lease_log(environment: Environment) -> str:
    step = environment.runs.order_by("id").first().steps.get(name="lease_db")
    return "\n".join(step.lines.values_list("text", flat=True))


def dialect(settings) -> str:
    return settings.PORTAL_DB_POOL


@pytest.fixture(params=["sqlite", "mysql"])
def either_pool(request: pytest.FixtureRequest) -> str:
    """The test runs on the embedded pool and on the MySQL pool (the real MariaDB)."""
    if request.param == "mysql":
        request.getfixturevalue("mysql_pool")
    return request.param


# Uploads: the API, manage.py, the admin.

@pytest.fixture
def admin_token(admin) -> str:
    return tokens.create(admin, "datasets")


def test_an_api_upload_is_a_new_version_with_size_checksum_and_uploader(
        demo_project, pool_of, admin, admin_token, settings):
    pool_of(1)
    dump = demo.dataset_sql("sqlite")

    first = call(Client(), "put", "/projects/demo/dataset", admin_token, raw=dump.decode())
    second = call(Client(), "put", "/projects/demo/dataset", admin_token,
                  raw=dump.decode() + "-- again\n")

    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["project"], body["version"], body["size"], body["sha256"]) == (
        "demo", 1, len(dump), hashlib.sha256(dump).hexdigest())
    assert (body["state"], body["error"], body["uploaded_by"]) == ("ready", "", "boss")
    assert second.json()["version"] == 2
    # Stored through the report storage, under the var directory.
    stored = settings.VAR_DIR / "reports" / DatasetVersion.objects.get(number=1).key
    assert stored.read_bytes() == dump
    event = AuditEvent.objects.get(action="upload_dataset", detail__version=1)
    assert (event.actor_name, event.interface) == ("boss", Interface.API)


def test_a_developer_may_not_upload_a_dataset(demo_project, developer):
    token = tokens.create(developer, "dev")

    response = call(Client(), "put", "/projects/demo/dataset", token, raw="SELECT 1;")

    assert response.status_code == 403
    assert response.json()["error"]
    assert not DatasetVersion.objects.exists()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_portal() -> Iterator[str]:
    """The portal's WSGI application behind a real HTTP server."""
    server = make_server("127.0.0.1", 0, WSGIHandler(), server_class=WSGIServer,
                         handler_class=_QuietHandler)
    with serving(server) as url:
        yield url.removeprefix("http://")


def test_a_dump_over_the_limit_is_refused_before_its_body_is_sent(
        demo_project, admin_token, http_portal, settings):
    settings.PORTAL_DATASET_MAX_MB = 1
    host, port = http_portal.split(":")
    declared = 50 * 1024 * 1024
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall((f"PUT /api/v1/projects/demo/dataset HTTP/1.1\r\nHost: {http_portal}\r\n"
                      f"Authorization: Bearer {admin_token}\r\n"
                      f"Content-Length: {declared}\r\n\r\n").encode())
        sock.sendall(b"INSERT INTO t VALUES (1);\n" * 100)  # 2.6 KB of the 50 MB declared
        answer = sock.makefile("rb").read()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 413") or head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["detail"] == {"max_mb": 1}
    assert not DatasetVersion.objects.exists()


def test_a_dump_without_a_declared_length_is_cut_off_at_the_limit(demo_project, admin, settings):
    settings.PORTAL_DATASET_MAX_MB = 0.01
    endless = io.BytesIO(b"INSERT INTO t VALUES (1);\n" * 100_000)

    with pytest.raises(datasets.Refused) as refused:
        datasets.read_dump(endless, None)

    assert refused.value.status == 413
    assert endless.tell() <= 1024 * 1024 < len(endless.getvalue())  # one chunk was read


def test_manage_py_uploads_a_gzip_dump(demo_project, pool_of, tmp_path, capsys):
    pool_of(1)
    dump = tmp_path / "demo.sql.gz"
    dump.write_bytes(gzip.compress(demo.dataset_sql("sqlite")))

    call_command("dataset", "upload", "demo", str(dump))

    version = DatasetVersion.objects.get()
    assert (version.number, version.compressed, version.state) == (1, True, DatasetState.READY)
    assert version.key.endswith(".sql.gz")
    assert "v1\tready" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no project 'nope'"):
        call_command("dataset", "upload", "nope", str(dump))


def test_an_admin_uploads_a_dataset_in_the_admin(demo_project, pool_of, admin):
    pool_of(1)
    admin.is_staff = True
    admin.save()
    client = client_for(admin)
    dump = io.BytesIO(demo.dataset_sql("sqlite", rows=10))
    dump.name = "demo.sql"

    response = client.post("/admin/environments/datasetversion/add/",
                           {"project": demo_project.pk, "dump": dump}, follow=True)

    assert response.status_code == 200
    version = DatasetVersion.objects.get()
    assert (version.number, version.state, version.uploaded_by) == (1, DatasetState.READY, admin)
    listing = client.get("/admin/environments/datasetversion/").content.decode()
    assert "demo v1" in listing and version.sha256 in listing


def test_the_admin_refuses_a_dump_over_the_limit(demo_project, admin, settings):
    settings.PORTAL_DATASET_MAX_MB = 0.001
    admin.is_staff = True
    admin.save()
    dump = io.BytesIO(b"-- big\n" * 1000)
    dump.name = "big.sql"

    response = client_for(admin).post("/admin/environments/datasetversion/add/",
                                      {"project": demo_project.pk, "dump": dump})

    assert "Larger than PORTAL_DATASET_MAX_MB" in response.content.decode()
    assert not DatasetVersion.objects.exists()


# Restores into slots: warm ones ahead of time, or during lease_db.

def test_warm_slots_hold_the_current_version_and_a_launch_takes_one_with_no_restore(
        either_pool, demo_project, pool_of, developer, settings):
    pool_of(3)
    demo_project.warm_slots = 2
    demo_project.save()
    version = upload(demo_project, demo.dataset_sql(dialect(settings), ROWS))

    assert version.state == DatasetState.READY
    assert sorted(states().values()) == [(SlotState.FREE, None), (SlotState.WARM, "demo v1"),
                                         (SlotState.WARM, "demo v1")]
    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    slot = DbSlot.objects.get(environment=environment)
    assert str(slot.dataset) == "demo v1"
    log = lease_log(environment)
    assert f"{slot.name} was warm with dataset demo v1: no restore" in log
    assert "restoring" not in log
    # The app lists the dataset's rows, with the branch's seed on top.
    with urllib.request.urlopen(environment.urls["api"] + "items", timeout=10) as response:
        items = json.loads(response.read())
    assert len(items) >= ROWS and items[0]["name"] == "t-shirt #1"
    assert slot_rows(slot, "SELECT note FROM seed_info") == [("seeded by the portal",)]
    # The free slot was warmed in its place.
    assert sorted(s for s in states().values() if s[0] != SlotState.LEASED) == [
        (SlotState.WARM, "demo v1"), (SlotState.WARM, "demo v1")]


def test_without_a_warm_slot_lease_db_restores_with_progress_in_the_step_log(
        either_pool, demo_project, pool_of, developer, settings):
    pool_of(1)
    upload(demo_project, demo.dataset_sql(dialect(settings), ROWS))
    slot = dbpool.slot_name(1)
    assert states() == {slot: (SlotState.FREE, None)}  # no warm slots asked for

    environment = launch(demo_project, "main", developer)

    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    log = lease_log(environment)
    assert f"no warm slot of dataset demo v1: restoring it into {slot}" in log
    assert f"restored dataset demo v1 into {slot} in" in log
    assert log.index("restored dataset") < log.index(f"seeded {slot}")
    assert slot_rows(DbSlot.objects.get()) == [(ROWS,)]


def test_another_projects_warm_slot_is_emptied_before_a_project_without_data_gets_it(
        either_pool, demo_project, pool_of, settings, demo_repo):
    pool_of(1)
    demo_project.warm_slots = 1
    demo_project.save()
    upload(demo_project, demo.dataset_sql(dialect(settings), 10))
    shop = demo.register(demo_repo, name="shop")
    environment = Environment.objects.create(project=shop, branch="main", env_key="k")
    lines: list[str] = []

    slot = dbpool.lease_slot(environment)  # the only slot, warm with demo's data
    datasets.fill_leased(slot, shop, lines.append)

    assert lines == [f"emptied {slot.name} of dataset demo v1"]
    slot.refresh_from_db()
    assert slot.dataset is None
    with pytest.raises((sqlite3.Error, pymysql.MySQLError), match="items"):
        slot_rows(slot)


def test_a_broken_dump_is_marked_broken_and_the_previous_version_keeps_serving(
        either_pool, demo_project, pool_of, developer, settings):
    pool_of(2)
    demo_project.warm_slots = 1
    demo_project.save()
    upload(demo_project, demo.dataset_sql(dialect(settings), ROWS))

    broken = upload(demo_project, b"CREATE TABLE items (id INTEGER);\nINSERT INTO nowhere;\n")

    assert broken.state == DatasetState.BROKEN
    assert "nowhere" in broken.error or "syntax" in broken.error.lower(), broken.error
    assert datasets.current(demo_project).number == 1
    environment = launch(demo_project, "main", developer)
    assert environment.status == EnvironmentStatus.READY, environment.status_detail
    assert str(DbSlot.objects.get(environment=environment).dataset) == "demo v1"
    assert slot_rows(DbSlot.objects.get(environment=environment)) == [(ROWS,)]


def test_a_sqlite_dump_cannot_attach_another_file(demo_project, pool_of, tmp_path):
    pool_of(1)
    outside = tmp_path / "outside.sqlite3"

    version = upload(demo_project, f"ATTACH DATABASE '{outside}' AS other;\n"
                                   "CREATE TABLE other.stolen (x);\n".encode())

    assert version.state == DatasetState.BROKEN
    assert "not authorized" in version.error
    assert not outside.exists()


# A new version.

def test_a_new_version_rewarms_free_slots_while_a_leased_slot_keeps_its_version(
        either_pool, demo_project, pool_of, developer, admin, settings):
    pool_of(3)
    demo_project.warm_slots = 2
    demo_project.save()
    upload(demo_project, demo.dataset_sql(dialect(settings), ROWS))
    environment = launch(demo_project, "main", developer)
    leased = DbSlot.objects.get(environment=environment)

    upload(demo_project, demo.dataset_sql(dialect(settings), ROWS + 500))

    shown = states()
    assert shown[leased.name] == (SlotState.LEASED, "demo v1")
    assert sorted(s for name, s in shown.items() if name != leased.name) == [
        (SlotState.WARM, "demo v2"), (SlotState.WARM, "demo v2")]
    assert slot_rows(DbSlot.objects.get(pk=leased.pk)) == [(ROWS,)]
    for slot in DbSlot.objects.filter(state=SlotState.WARM):
        assert slot_rows(slot) == [(ROWS + 500,)]
    page = client_for(developer).get(f"/environments/{environment.pk}").content.decode()
    assert 'data-dataset="demo v1"' in page
    assert "demo v2 is current: this environment keeps the version it got" in page
    # A redeploy keeps its data and version; a new launch gets the new one.
    again = launch(demo_project, "main", developer)
    assert str(DbSlot.objects.get(environment=again).dataset) == "demo v1"
    other = launch(demo_project, "feature/checkout", developer)
    assert str(DbSlot.objects.get(environment=other).dataset) == "demo v2"


def test_a_restore_asked_for_an_older_version_copies_the_current_one(
        demo_project, pool_of, settings):
    pool_of(1)
    first = upload(demo_project, demo.dataset_sql(dialect(settings), 10))
    slot = DbSlot.objects.get()
    # Claimed for v1, its task not run yet when v2 becomes current (and v1's template goes).
    DbSlot.objects.filter(pk=slot.pk).update(state=SlotState.RESTORING, dataset=first)
    upload(demo_project, demo.dataset_sql(dialect(settings), 20))

    datasets.restore_slot(slot.pk)

    assert states() == {slot.name: (SlotState.WARM, "demo v2")}
    assert slot_rows(DbSlot.objects.get()) == [(20,)]


# What a dump may not do: the MySQL pool restores as a user whose rights end at its database.

@pytest.mark.parametrize("statement", [
    "USE mysql;\nCREATE TABLE planted (x INT);",
    "CREATE USER intruder IDENTIFIED BY 'pw';",
    "GRANT ALL PRIVILEGES ON *.* TO CURRENT_USER();",
    "CREATE TABLE mysql.planted (x INT);",
])
def test_a_dump_writing_outside_its_database_fails_for_lack_of_rights(
        statement, mysql_pool, demo_project, pool_of):
    pool_of(1)
    upload(demo_project, demo.dataset_sql("mysql", 10))

    version = upload(demo_project, f"CREATE TABLE fine (x INT);\n{statement}\n".encode())

    assert version.state == DatasetState.BROKEN
    assert "denied" in version.error, version.error
    assert datasets.current(demo_project).number == 1
    admin = pymysql.connect(unix_socket=mysql_pool.socket, user="root")
    with admin, admin.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM mysql.user WHERE User = 'intruder'")
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT COUNT(*) FROM information_schema.tables "
                       "WHERE table_name = 'planted'")
        assert cursor.fetchone() == (0,)


def test_restores_run_as_the_template_and_slot_users_never_the_pool_admin(
        mysql_pool, demo_project, pool_of, developer):
    pool_of(1)
    upload(demo_project, b"CREATE TABLE who (restored_by VARCHAR(200));\n"
                         b"INSERT INTO who VALUES (CURRENT_USER());\n")
    environment = Environment.objects.create(project=demo_project, branch="main",
                                             env_key="k")
    slot = dbpool.lease_slot(environment)
    datasets.fill_leased(slot, demo_project, lambda _line: None)

    [(restored_by,)] = slot_rows(slot, "SELECT restored_by FROM who")
    template = get("pool").template(DatasetVersion.objects.get().pk)
    assert restored_by.split("@")[0] == template
    assert ADMIN_USER not in restored_by
    assert slot_rows(slot, "SELECT CURRENT_USER()")[0][0].split("@")[0] == slot.name


# The pool page.

def pool_with_two_versions(project: Project, settings) -> Environment:
    """5 slots: one leased with v1, two warm with v2 (re-warmed from v1), one blank, one
    broken."""
    dbpool.ensure_pool_size(5)
    project.warm_slots = 2
    project.save()
    first = upload(project, demo.dataset_sql(dialect(settings), 50))
    environment = Environment.objects.create(project=project, branch="main", env_key="k")
    dbpool.lease_slot(environment, first.pk)
    DbSlot.objects.filter(name=dbpool.slot_name(5)).update(
        state=SlotState.RESETTING, error="reset failed: the server went away")
    upload(project, demo.dataset_sql(dialect(settings), 60))
    return environment


def test_the_pool_page_splits_the_pool_by_project_and_dataset_version(
        demo_project, qa, settings):
    environment = pool_with_two_versions(demo_project, settings)

    page = client_for(qa).get("/pool").content.decode()

    groups = dict(re.findall(r'<tr data-dataset="([^"]+)">(.*?)</tr>', page, re.S))
    assert set(groups) == {"none", "demo v1", "demo v2"}
    def count(group: str, state: str) -> int:
        return int(re.search(rf'data-state="{state}"[^>]*>(\d+)<', groups[group]).group(1))
    assert (count("demo v2", "warm"), count("demo v2", "leased")) == (2, 0)
    assert (count("demo v1", "leased"), count("demo v1", "warm")) == (1, 0)
    assert (count("none", "free"), count("none", "broken")) == (1, 1)
    assert "current" in groups["demo v2"] and "older: kept while leased" in groups["demo v1"]
    leased = DbSlot.objects.get(environment=environment)
    assert re.search(rf'data-slot="{leased.name}">.*?data-dataset>demo v1<', page, re.S)


def test_the_pool_api_counts_warm_slots_and_names_each_slots_dataset(
        demo_project, qa, settings):
    pool_with_two_versions(demo_project, settings)

    body = call(Client(), "get", "/pool", tokens.create(qa, "qa")).json()

    assert (body["free"], body["warm"], body["restoring"], body["leased"]) == (1, 2, 0, 1)
    assert sorted(slot["dataset"] or "-" for slot in body["slots"]) == [
        "-", "-", "demo v1", "demo v2", "demo v2"]


def test_the_pool_page_in_chromium(demo_project, admin, settings, http_portal, tmp_path,
                                   request: pytest.FixtureRequest):
    from playwright.sync_api import expect

    pool_with_two_versions(demo_project, settings)
    client = Client()
    client.force_login(admin)
    # Playwright's loop would make the ORM refuse to run in this thread: the data comes first.
    browser = request.getfixturevalue("browser")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value,
                          "url": f"http://{http_portal}"}])
    page = context.new_page()

    page.goto(f"http://{http_portal}/pool")

    newest = page.locator('tr[data-dataset="demo v2"]')
    expect(newest.locator('td[data-state="warm"]')).to_have_text("2")
    expect(newest).to_contain_text("current")
    expect(page.locator('tr[data-dataset="demo v1"] td[data-state="leased"]')).to_have_text("1")
    expect(page.locator('tr[data-dataset="none"] td[data-state="broken"]')).to_have_text("1")
    expect(page.locator(".legend")).to_contain_text("warm 2")
    page.screenshot(path=str(tmp_path / "pool.png"), full_page=True)


def test_a_mysql_copy_keeps_keys_views_and_triggers_and_fires_none(
        mysql_pool, demo_project, pool_of):
    pool_of(1)
    upload(demo_project, b"""
CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;
CREATE TABLE orders (id INT PRIMARY KEY, customer INT,
                     FOREIGN KEY (customer) REFERENCES customers (id)) ENGINE=InnoDB;
CREATE TABLE audit (n INT);
CREATE TRIGGER counted AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit VALUES (NEW.id);
INSERT INTO customers VALUES (1, 'ada');
INSERT INTO orders VALUES (10, 1);
CREATE VIEW named AS SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer;
""")
    environment = Environment.objects.create(project=demo_project, branch="main", env_key="k")
    slot = dbpool.lease_slot(environment)
    lines: list[str] = []

    datasets.fill_leased(slot, demo_project, lines.append)

    assert slot_rows(slot, "SELECT * FROM named") == [(10, "ada")]
    assert slot_rows(slot, "SELECT n FROM audit") == [(10,)]  # the restore's, not the copy's
    assert "copied orders: 1 rows" in lines
    slot_rows(slot, "INSERT INTO orders VALUES (12, 1)")
    assert slot_rows(slot, "SELECT n FROM audit ORDER BY n") == [(10,), (12,)]
    with pytest.raises(pymysql.err.IntegrityError):
        slot_rows(slot, "INSERT INTO orders VALUES (13, 99)")
    # The slot's user reads the template only while copying.
    with pytest.raises(pymysql.err.OperationalError, match="denied"):
        slot_rows(slot, f"SELECT * FROM {get('pool').template(DatasetVersion.objects.get().pk)}"
                        ".customers")
