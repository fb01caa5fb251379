from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from environments import tokens


class Command(BaseCommand):
    help = "Create an API token for USER and print it (alone, on the last line)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("user")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, user: str, name: str, **options) -> None:
        owner = get_user_model().objects.filter(username=user).first()
        if owner is None:
            raise CommandError(f"no user {user!r}")
        token = tokens.create(owner, name)
        self.stdout.write(f"Token for {owner.get_username()} (shown once, stored hashed):")
        self.stdout.write(token)
