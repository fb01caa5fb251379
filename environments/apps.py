from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "environments"
    verbose_name = "Preview environments"

    def ready(self) -> None:
        from environments.backends import check_configured
        from portal import startup

        # Fail at start, naming the variable, rather than on the first deploy or request.
        check_configured()
        if startup.serving():
            startup.refuse_without_secrets()
