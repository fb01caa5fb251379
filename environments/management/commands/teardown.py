from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from environments import roles, services
from environments.models import Environment, Interface
from environments.refused import Refused


class Command(BaseCommand):
    help = "Tear down an environment (by id), as USER."

    def add_arguments(self, parser) -> None:
        parser.add_argument("environment", type=int)
        parser.add_argument("--user", required=True)

    def handle(self, *args, environment: int, user: str, **options) -> None:
        actor = get_user_model().objects.filter(username=user).first()
        if actor is None or not roles.can(actor, roles.TEARDOWN):
            raise CommandError(f"{user!r} is not a user allowed to tear down previews")
        found = Environment.objects.filter(pk=environment).first()
        if found is None:
            raise CommandError(f"no environment {environment}")
        try:
            run = services.teardown(found, actor=actor, interface=Interface.CLI)
        except Refused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"teardown run {run.pk} queued")
