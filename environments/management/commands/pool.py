from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from environments import dbpool
from environments.backends import BackendError
from environments.models import DbSlot, Interface
from environments.refused import Refused


class Command(BaseCommand):
    help = (
        "DB pool: 'status' lists the slots; 'resize N' grows or shrinks it (free slots only); "
        "'ensure' grows it to PORTAL_POOL_SIZE (what the portal does at start)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("status", "resize", "ensure"))
        parser.add_argument("size", nargs="?", type=int)

    def handle(self, *args, action: str, size: int | None, **options) -> None:
        try:
            if action == "ensure":
                added = dbpool.ensure_pool_size(settings.PORTAL_POOL_SIZE)
                self.stdout.write(f"pool has {dbpool.active_slots().count()} slots "
                                  f"({added} added)")
            elif action == "resize":
                if size is None or size < 0:
                    raise CommandError("pool resize needs a size of 0 or more")
                result = dbpool.resize_pool(size, actor=None, interface=Interface.CLI)
                self.stdout.write(f"pool has {result['size']} slots ({result['added']} added, "
                                  f"{result['retired']} retired)")
            else:
                self._status()
        except Refused as exc:
            raise CommandError(str(exc)) from exc
        except BackendError as exc:
            raise CommandError(f"the pool server refused: {exc}") from exc

    def _status(self) -> None:
        for slot in DbSlot.objects.select_related("environment__project"):
            holder = str(slot.environment) if slot.environment else "-"
            self.stdout.write(f"{slot.name}\t{slot.state}\t{holder}\t{slot.error}")
