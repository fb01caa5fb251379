from django.core.management.base import BaseCommand

from environments import services
from environments.backends import BackendError, get
from environments.backends.runtime import Runtime
from environments.models import Environment, Interface


class Command(BaseCommand):
    help = ("List what the runtime holds for environments that are not live (torn down or never "
            "recorded) and remove it; --dry-run only lists.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args, dry_run: bool, **options) -> None:
        runtime = get("runtime")
        held = runtime.inventory()
        # Read after the inventory: an environment launched in between counts as live.
        live = set(Environment.objects.active().values_list("env_key", flat=True))
        orphans = {key: things for key, things in held.items() if key not in live}
        if not orphans:
            self.stdout.write("no orphans: everything the runtime holds belongs to a live "
                              "environment")
            return
        for key, things in sorted(orphans.items()):
            self.stdout.write(f"orphan {key}:")
            for thing in things:
                self.stdout.write(f"  {thing}")
            if not dry_run:
                self._remove(runtime, key, things)
        if dry_run:
            self.stdout.write(f"{len(orphans)} orphaned environment(s); run without --dry-run "
                              "to remove them")

    def _remove(self, runtime: Runtime, key: str, things: list[str]) -> None:
        try:
            runtime.delete(key, lambda line: self.stdout.write(f"  {line}"))
        except BackendError as exc:
            self.stderr.write(f"  could not remove {key}: {exc}")
            return
        services.audit(None, Interface.CLI, "reconcile", env_key=key, removed=things)
