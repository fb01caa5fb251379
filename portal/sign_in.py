"""The sign-in pages: the login page (the identity provider first, then passwords unless
PORTAL_LOCAL_LOGIN=0 keeps them for superusers), the start of a single sign-on and its
callback, and the page that says why a sign-in was refused."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.generic import View
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from environments.backends import BackendError
from environments.sso import SignInRefused
from portal import login, oidc


def login_page(request: HttpRequest) -> HttpResponse:
    return auth_views.LoginView.as_view(
        authentication_form=login.LoginForm,
        extra_context={"sso": oidc.name() if oidc.enabled() else "",
                       "local_login": settings.PORTAL_LOCAL_LOGIN},
    )(request)


def refused(request: HttpRequest, reason: str, status: int) -> HttpResponse:
    return render(request, "registration/sign_in_refused.html",
                  {"reason": reason, "sso": oidc.name()}, status=status)


class Start(OIDCAuthenticationRequestView):
    """Sends the browser to the provider with a new state, nonce and PKCE challenge."""

    def __init__(self, **kwargs: object) -> None:
        # The library's reads the endpoint from settings; ours comes from discovery, in get.
        View.__init__(self, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        if not oidc.enabled():
            raise Http404("single sign-on is not set up (PORTAL_OIDC_ISSUER)")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = oidc.provider().authorization_endpoint
        except BackendError as exc:
            return refused(request, f"The identity provider cannot be reached: {exc}", 502)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        return super().get(request)


class Callback(OIDCAuthenticationCallbackView):
    """Where the provider sends the browser back: the state must be one this browser's session
    started and not used yet; its code is then exchanged once (portal.oidc.Backend)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if not oidc.enabled():
            raise Http404("single sign-on is not set up (PORTAL_OIDC_ISSUER)")
        try:
            return super().get(request)
        except SignInRefused as exc:
            return refused(request, exc.reason, exc.status)
        except SuspiciousOperation:
            # The library's word for a state this session never started, or has used.
            return refused(request, "This sign-in answer does not belong to a sign-in started "
                           "in this browser, or was used already: it is refused. Start again.",
                           400)

    def login_failure(self) -> HttpResponse:
        error = self.request.GET.get("error")
        if error:
            said = self.request.GET.get("error_description") or error
            return refused(self.request, f"The identity provider did not sign you in: {said}.",
                           403)
        return refused(self.request, "No sign-in was started in this browser (or its session "
                       "ended meanwhile): start again.", 400)
