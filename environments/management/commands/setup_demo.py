from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from environments import datasets, demo
from environments.models import Interface


class Command(BaseCommand):
    help = "Create the demo repository (if missing) and register it as project 'demo'."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--path", default=str(Path(settings.VAR_DIR) / "demo-repo"))
        parser.add_argument("--dataset", action="store_true",
                            help="Also give the demo its generated dataset and 2 warm slots.")

    def handle(self, *args, path: str, dataset: bool, **options) -> None:
        repository = demo.build_repository(Path(path))
        project = demo.register(repository)
        self.stdout.write(f"project {project.name}: {repository}")
        if dataset and not project.dataset_versions.exists():
            # Registered once, like the project: an admin's own dataset stands.
            version = datasets.upload(project, demo.dataset_sql(settings.PORTAL_DB_POOL),
                                      actor=None, interface=Interface.CLI)
            project.warm_slots = 2
            project.save(update_fields=["warm_slots"])
            self.stdout.write(f"dataset {version}: {demo.DATASET_ROWS} items, 2 warm slots")
