from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "environments"
    verbose_name = "Preview environments"

    def ready(self) -> None:
        from environments import sandbox  # noqa: F401 (registers its start-up check)
        from environments.backends import check_configured

        # Fail at start, naming the variable, rather than on the first deploy.
        check_configured()
