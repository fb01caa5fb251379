from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "environments"
    verbose_name = "Preview environments"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from environments import sandbox  # noqa: F401 (registers its start-up check)
        from environments.backends import check_configured
        from environments.tasks import resume_orphaned_runs

        post_spawn.connect(resume_orphaned_runs, dispatch_uid="resume_orphaned_runs")

        # Fail at start, naming the variable, rather than on the first deploy.
        check_configured()
