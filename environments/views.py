"""Pages. Function-based views; state changes go through services."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain")


@login_required
def _todo(request: HttpRequest, **kwargs: object) -> HttpResponse:
    return HttpResponse("not yet", status=501)


dashboard = launch = branch_options = environment = environment_live = _todo
redeploy = teardown = smoke = component_logs = report = _todo
