from django.core.management.base import BaseCommand

from environments import reconciler
from environments.models import Interface


class Command(BaseCommand):
    help = ("Compare what the portal believes with what exists (runtime objects, DB slots, DNS "
            "records, stuck runs and resets) and fix each finding; --dry-run only lists them.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, dry_run: bool, **options) -> None:
        done = reconciler.run_pass(dry_run=dry_run, actor=None, interface=Interface.CLI,
                                   log=self.stdout.write)
        if not done.findings:
            self.stdout.write("nothing to fix: no orphans, no stuck runs or resets")
        elif dry_run:
            self.stdout.write(f"{len(done.findings)} finding(s); run without --dry-run to fix "
                              "them")
        for finding in done.findings:
            if finding["action"].startswith("failed:"):
                self.stderr.write(f"{finding['kind']} {finding['subject']}: {finding['action']}")
