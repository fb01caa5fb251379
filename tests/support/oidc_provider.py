"""A real OpenID provider on loopback for the tests: the npm package oidc-provider (a certified
OpenID Connect implementation) run by tests/oidc/provider.mjs with its own login and consent
pages. scripts/oidc-provider-install (run by `make test`) installs it outside the repository."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.live import ROOT, stop_group
from tests.support.tools import require_tool

SOURCE = ROOT / "tests" / "oidc"
CLIENT_ID = "preview-portal"
CLIENT_SECRET = "test-only-client-secret"


def installed() -> Path:
    """node_modules of the pinned oidc-provider (skips, or fails on CI, when missing)."""
    version = json.loads((SOURCE / "package.json").read_text())["dependencies"]["oidc-provider"]
    cache = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "preview-portal"))
    modules = cache / f"oidc-provider-{version}" / "node_modules"
    require_tool(shutil.which("node") is not None and (modules / "oidc-provider").is_dir(),
                 f"node and oidc-provider {version} (scripts/oidc-provider-install)")
    return modules


@dataclass(frozen=True)
class Provider:
    issuer: str
    accounts_file: Path

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        """{login: {name, email, groups}}: read by the provider at each sign-in."""
        self.accounts_file.write_text(json.dumps(accounts))


@contextmanager
def running_provider(folder: Path, issuer_port: int, redirect_uri: str,
                     accounts: dict[str, dict[str, Any]]) -> Iterator[Provider]:
    folder.mkdir(parents=True, exist_ok=True)
    # Node resolves an import from the script's own folder up: the packages go beside it.
    shutil.copy(SOURCE / "provider.mjs", folder / "provider.mjs")
    (folder / "node_modules").symlink_to(installed())
    provider = Provider(f"http://127.0.0.1:{issuer_port}", folder / "accounts.json")
    provider.set_accounts(accounts)
    (folder / "config.json").write_text(json.dumps({
        "port": issuer_port, "accounts": str(provider.accounts_file),
        "client": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "redirect_uri": redirect_uri},
    }))
    log = (folder / "provider.log").open("w+")
    process = subprocess.Popen(["node", "provider.mjs", "config.json"], cwd=folder, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_until_up(process, provider.issuer, folder / "provider.log")
        yield provider
    finally:
        stop_group(process, grace=5)
        log.close()


def _wait_until_up(process: subprocess.Popen[bytes], issuer: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the provider exited:\n{log.read_text()[-3000:]}")
        if re.search(r"listening on", log.read_text()):
            urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=5).close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"the provider did not come up:\n{log.read_text()[-3000:]}")
