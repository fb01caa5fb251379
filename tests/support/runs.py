"""Running the pipeline from a test, tasks inline (tests/conftest.py's inline_tasks)."""

from django.contrib.auth.models import User

from environments import services
from environments.models import Environment, Interface, Project


def launch(project: Project, branch: str, user: User) -> Environment:
    """Launch and, tasks being inline, return the environment as the run left it."""
    environment = services.launch(project, branch, actor=user, interface=Interface.CLI)
    environment.refresh_from_db()
    return environment
