from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from environments import roles, services
from environments.models import Interface, Project
from environments.refused import Refused


class Command(BaseCommand):
    help = "Launch (or redeploy) a preview of a branch, as USER."

    def add_arguments(self, parser) -> None:
        parser.add_argument("project")
        parser.add_argument("branch")
        parser.add_argument("--user", required=True, help="who launches (must be developer/admin)")
        parser.add_argument("--commit")

    def handle(self, *args, project: str, branch: str, user: str, commit: str | None,
               **options) -> None:
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None or not roles.can(actor, roles.LAUNCH):
            raise CommandError(f"{user!r} is not a user allowed to launch previews")
        found = Project.objects.filter(name=project).first()
        if found is None:
            raise CommandError(f"no project {project!r}")
        try:
            environment = services.launch(found, branch, actor=actor, interface=Interface.CLI,
                                          commit=commit)
        except Refused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"environment {environment.pk} ({environment.status})")
