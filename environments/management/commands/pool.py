from django.conf import settings
from django.core.management.base import BaseCommand

from environments import services
from environments.models import DbSlot


class Command(BaseCommand):
    help = "DB pool: 'status' lists the slots; 'ensure' grows the pool to PORTAL_POOL_SIZE."

    def add_arguments(self, parser) -> None:
        parser.add_argument("action", choices=("status", "ensure"))

    def handle(self, *args, action: str, **options) -> None:
        if action == "ensure":
            added = services.ensure_pool_size(settings.PORTAL_POOL_SIZE)
            self.stdout.write(f"pool has {DbSlot.objects.count()} slots ({added} added)")
            return
        for slot in DbSlot.objects.select_related("environment"):
            holder = str(slot.environment) if slot.environment else "-"
            self.stdout.write(f"{slot.name}\t{slot.state}\t{holder}\t{slot.error}")
