"""Checks made when the portal starts to serve (web or worker), not for every command: a
production process refuses to start without its secrets, naming the variable."""

import sys

from portal import env

SERVING_COMMANDS = {"runserver", "qcluster", "run_portal"}


def serving() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] in SERVING_COMMANDS


def refuse_without_secrets() -> None:
    if env.flag("PORTAL_DEBUG"):
        return
    for name in ("PORTAL_SECRET_KEY", "PORTAL_ALLOWED_HOSTS"):
        env.require(name, env.text(name), "unless PORTAL_DEBUG=1")
