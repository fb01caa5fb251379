"""People in the portal's roles."""

from django.contrib.auth.models import Group, User


def make_user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username, password="pw-" + username)
    if role:
        # get_or_create: transactional tests flush what the data migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user
