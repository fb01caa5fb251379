from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from environments import demo


class Command(BaseCommand):
    help = "Create the demo repository (if missing) and register it as project 'demo'."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--path", default=str(Path(settings.VAR_DIR) / "demo-repo"))

    def handle(self, *args, path: str, **options) -> None:
        repository = demo.build_repository(Path(path))
        project = demo.register(repository)
        self.stdout.write(f"project {project.name}: {repository}")
