from django.http import HttpRequest

from environments import roles as portal_roles


def roles(request: HttpRequest) -> dict[str, object]:
    user = request.user
    return {
        "perms_portal": {
            action: portal_roles.can(user, action) for action in portal_roles.ALLOWED
        },
        "user_roles": sorted(portal_roles.roles_of(user)),
    }
