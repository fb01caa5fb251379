"""Shared fixtures: a real git repository of the demo product, users in each role, a DB pool,
and tasks run inline (django-q2 sync mode) unless a test starts real workers."""

import itertools
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
from django.contrib.auth.models import User
from moto.server import ThreadedMotoServer

from environments import dbpool, demo, roles, taskqueue, tasks
from environments.backends.runtime.local import LocalRuntime
from environments.models import Project
from tests.support import kube, shared
from tests.support import mariadb as mariadb_server
from tests.support.crash import Template, build_template
from tests.support.fake_github import SECRET, TOKEN, FakeGitHub, fake_github
from tests.support.fake_slack import TOKEN as SLACK_TOKEN
from tests.support.fake_slack import FakeSlack, fake_slack
from tests.support.mariadb import MariaDB
from tests.support.route53 import DOMAIN
from tests.support.tools import require_tool
from tests.support.users import make_user

KUBE_CLUSTER = "kube-cluster.json"  # where the shared test cluster is (run_dir)
# Whole portals started, workers killed at every step, or branches run in the sandbox.
SLOW_MODULES = {"test_crash_resume", "test_crash_resume_kubernetes", "test_sandbox",
                "test_web_restart", "test_parity_workers"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test-quick` leaves out the tests marked slow here."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in SLOW_MODULES or "kube_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo.build_repository(tmp_path_factory.mktemp("demo") / "repo")


@pytest.fixture(autouse=True)
def isolated_var(settings, tmp_path: Path) -> Iterator[Path]:
    """Each test gets its own runtime, pool and report directories; its processes are
    stopped at the end even when it fails."""
    settings.VAR_DIR = tmp_path / "var"
    settings.VAR_DIR.mkdir()
    yield settings.VAR_DIR
    runtime = LocalRuntime()  # whichever runtime the test chose, no process may outlive it
    for key in runtime.inventory():
        runtime.delete(key, lambda _line: None)


@pytest.fixture(autouse=True)
def inline_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def demo_project(db, demo_repo: Path) -> Project:
    return demo.register(demo_repo)


@pytest.fixture
def pool_of(db):
    def grow(size: int) -> None:
        dbpool.ensure_pool_size(size)

    return grow


@pytest.fixture
def developer(db) -> User:
    return make_user("dev", roles.DEVELOPER)


@pytest.fixture
def qa(db) -> User:
    return make_user("qa", roles.QA)


@pytest.fixture
def admin(db) -> User:
    return make_user("boss", roles.ADMIN)


@pytest.fixture
def outsider(db) -> User:
    return make_user("outsider", None)


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    require_tool(mariadb_server.available(), "MariaDB (Debian package mariadb-server)")
    server = MariaDB(tmp_path_factory.mktemp("mariadb") / "data")
    server.start()
    yield server
    server.remove()


_prefixes = itertools.count(1)


@pytest.fixture
def mysql_pool(settings, mariadb: MariaDB) -> MariaDB:
    """The mysql pool backend on the test server, with a prefix of this test's own."""
    settings.PORTAL_DB_POOL = "mysql"
    settings.PORTAL_POOL_MYSQL_URL = mariadb.admin_url
    settings.PORTAL_POOL_PREFIX = f"t{next(_prefixes)}_"
    return mariadb


@pytest.fixture
def deferred_runs(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Runs are queued instead of run inline; the returned function works the queue off, so a
    test can deliver several events before any of them is carried out."""
    queued: list[int] = []
    monkeypatch.setattr(taskqueue, "enqueue_run", queued.append)

    def drain() -> None:
        while queued:
            tasks.execute_run(queued.pop(0))

    return drain


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture
def browser():
    """Headless Debian Chromium through Playwright."""
    require_tool(bool(shutil.which(CHROMIUM)), f"{CHROMIUM} (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    return browser.new_context(viewport={"width": 1280, "height": 900}).new_page()


@pytest.fixture(scope="session")
def kube_cluster(run_dir: Path) -> kube.Cluster:
    """The run's test cluster, shared by every worker (each test in namespaces of its own):
    started by the first worker that needs it, stopped when the run ends (pytest_sessionfinish).
    One API server, etcd and controller manager instead of one per worker: ~25 s of CPU each."""
    lacking = kube.missing()
    require_tool(not lacking, f"the test Kubernetes cluster ({lacking})")

    def start() -> str:
        cluster = kube.Cluster(Path(tempfile.mkdtemp(prefix="kube-", dir=run_dir)))
        try:
            cluster.start()
        except BaseException:
            cluster.stop()
            raise
        return str(cluster.directory)

    return kube.Cluster(Path(shared.once(run_dir / KUBE_CLUSTER, start)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without xdist) stops the cluster its workers shared."""
    if hasattr(session.config, "workerinput"):
        return
    # The run directory of run_dir below: xdist gives each worker a directory in it.
    record = session.config._tmp_path_factory.getbasetemp() / KUBE_CLUSTER
    if record.exists():
        kube.Cluster(Path(json.loads(record.read_text()))).stop()


_namespaces = itertools.count(1)


@pytest.fixture
def kubernetes_runtime(settings, kube_cluster: kube.Cluster, worker_id: str) -> Iterator[str]:
    """The kubernetes runtime on the test cluster, in a namespace of this test's own."""
    namespace = f"previews-{worker_id}-t{next(_namespaces)}"
    kube.use_cluster(settings, kube_cluster.kubeconfig, namespace)
    # No container really runs on kwok's node: one smoke attempt shows that soon enough.
    settings.PORTAL_SMOKE_ATTEMPTS = 1
    yield namespace
    kube.delete_namespace(kube_cluster.client(), namespace)  # frees the node for later tests


@pytest.fixture
def slack(settings) -> Iterator[FakeSlack]:
    """A Slack Web API server on loopback, the portal configured to post to it."""
    with fake_slack() as fake:
        settings.PORTAL_NOTIFY = "slack"
        settings.SLACK_BOT_TOKEN = SLACK_TOKEN
        settings.PORTAL_SLACK_CHANNEL = "#previews"
        settings.PORTAL_SLACK_API_URL = fake.url
        yield fake


@pytest.fixture
def github(settings) -> Iterator[FakeGitHub]:
    """A GitHub API server on loopback, the portal configured to sign and call it."""
    with fake_github() as fake:
        settings.PORTAL_GITHUB_WEBHOOK_SECRET = SECRET
        settings.PORTAL_GITHUB_TOKEN = TOKEN
        settings.PORTAL_GITHUB_API_URL = fake.url
        yield fake


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def zone_id(moto_url: str, monkeypatch: pytest.MonkeyPatch, settings) -> str:
    """A hosted zone of its own, and the backend's settings pointing at it."""
    for name, value in {"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "eu-west-1",
                        "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    zone = boto3.client("route53").create_hosted_zone(
        Name=DOMAIN, CallerReference=str(uuid.uuid4()))["HostedZone"]["Id"]
    settings.PORTAL_DNS = "route53"
    settings.PORTAL_ROUTE53_ZONE_ID = zone
    settings.PORTAL_BASE_DOMAIN = DOMAIN
    settings.PORTAL_ROUTE53_RECORD = "alias"
    settings.PORTAL_ROUTE53_WILDCARD = False
    settings.PORTAL_ROUTE53_WAIT = True
    return zone


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A directory every xdist worker of this run shares (the run's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def crash_template(run_dir: Path) -> Template:
    """The crash-resume harness's prepared portal, copied for each case: built once per run,
    by the first worker that needs it."""
    def build() -> dict[str, str]:
        return build_template(run_dir / "crash-template").as_json()

    return Template.from_json(shared.once(run_dir / "crash-template.json", build))
