from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from environments import datasets
from environments.backends import BackendError
from environments.models import Interface, Project
from environments.refused import Refused


class Command(BaseCommand):
    help = (
        "Datasets: 'upload PROJECT FILE' makes the SQL dump (plain or gzip) the project's next "
        "version, restored into its warm slots once it restores cleanly; 'list PROJECT' shows "
        "the versions."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("upload", "list"))
        parser.add_argument("project")
        parser.add_argument("file", nargs="?", type=Path)

    def handle(self, *args, action: str, project: str, file: Path | None, **options) -> None:
        found = Project.objects.filter(name=project).first()
        if found is None:
            raise CommandError(f"no project {project!r}")
        if action == "list":
            for version in found.dataset_versions.all():
                self.stdout.write(_line(version))
            return
        if file is None:
            raise CommandError("dataset upload needs the dump's file")
        try:
            with file.open("rb") as stream:
                content = datasets.read_dump(stream, file.stat().st_size)
            version = datasets.upload(found, content, actor=None, interface=Interface.CLI)
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc}") from exc
        except Refused as exc:
            raise CommandError(str(exc)) from exc
        except BackendError as exc:
            raise CommandError(f"the dump could not be stored: {exc}") from exc
        version.refresh_from_db()
        self.stdout.write(_line(version))


def _line(version) -> str:
    error = f"\t{version.error}" if version.error else ""
    return (f"v{version.number}\t{version.state}\t{version.size} bytes\tsha256 {version.sha256}"
            f"\t{version.uploaded_at:%Y-%m-%d %H:%M}{error}")
