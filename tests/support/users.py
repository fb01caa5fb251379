"""People in the portal's roles."""

from functools import cache

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User


def make_user(username: str, role: str | None) -> User:
    """A user whose password is "pw-" + username."""
    user = User.objects.create(username=username, password=_hashed("pw-" + username))
    if role:
        # get_or_create: transactional tests flush what the data migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@cache
def _hashed(password: str) -> str:
    # A password hash takes Django's full PBKDF2 work (~0.4 s of CPU): hashed once per process
    # and password, not once per user the tests make (that was half the CPU of the test workers).
    return make_password(password)
