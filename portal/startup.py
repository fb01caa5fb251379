"""Checks made when the portal starts to serve (web or worker), not for every command."""

import sys

from django.conf import settings

from portal import env

SERVING_COMMANDS = {"runserver", "qcluster", "run_portal"}


def serving() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] in SERVING_COMMANDS


def refuse_without_secrets() -> None:
    env.refuse_unless(bool(settings.SECRET_KEY),
                      "PORTAL_SECRET_KEY must be set unless PORTAL_DEBUG=1")
    env.refuse_unless(bool(settings.ALLOWED_HOSTS),
                      "PORTAL_ALLOWED_HOSTS must be set unless PORTAL_DEBUG=1")
