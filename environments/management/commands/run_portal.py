"""`make run`: migrate, register the demo project, fill the pool, then serve web + worker."""

import secrets
import signal
import subprocess
import sys
import time
from types import FrameType

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from environments import dbpool


class Command(BaseCommand):
    help = "Run the portal (web + django-q2 worker) with the demo project, for a laptop."
    # The checks run once, below, for this command and its two children: each run imports the
    # whole URLconf (the API's pydantic schemas, the OpenID client), which the worker never needs.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--no-demo", action="store_true")
        parser.add_argument("--demo-dataset", action="store_true",
                            help="The demo with its generated dataset kept warm in 2 slots.")

    def handle(self, *args, addr: str, no_demo: bool, demo_dataset: bool, **options) -> None:
        # Refuses a configuration that cannot work, and says what is unsafe (no sandbox).
        call_command("check")
        call_command("migrate", verbosity=0)
        if not no_demo:
            call_command("setup_demo", dataset=demo_dataset)
        dbpool.ensure_pool_size(settings.PORTAL_POOL_SIZE)
        password = self._admin_password()
        children = [
            subprocess.Popen([sys.executable, "manage.py", "qcluster", "--skip-checks"]),
            subprocess.Popen([sys.executable, "manage.py", "runserver", addr, "--noreload",
                              "--skip-checks"]),
        ]
        self.stdout.write(self.style.SUCCESS(
            f"\nPreview Portal on http://{addr}/  (runtime {settings.PORTAL_RUNTIME}, "
            f"pool {settings.PORTAL_DB_POOL})\n"
            f"Log in as: admin / {password}   (a new password each start)\n"
        ))
        self._supervise(children)

    def _admin_password(self) -> str:
        """A fresh random password each start: the portal ships with no known credentials."""
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        user.set_password(password)
        user.save()
        return password

    def _supervise(self, children: list[subprocess.Popen[bytes]]) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
