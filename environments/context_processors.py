from django.http import HttpRequest

from environments import roles


def roles(request: HttpRequest) -> dict[str, object]:
    user = request.user
    return {
        "perms_portal": {action: roles.can(user, action) for action in roles.ALLOWED},
        "user_roles": sorted(roles.roles_of(user)),
    }
