from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from environments.api import api
from environments.github import webhooks
from portal import login, sign_in

# The admin's own login page is a way in too: throttled the same.
admin.site.login_form = login.AdminLoginForm

urlpatterns = [
    path("accounts/login/", sign_in.login_page, name="login"),
    # The names mozilla-django-oidc reverses.
    path("accounts/oidc/start/", sign_in.Start.as_view(), name="oidc_authentication_init"),
    path("accounts/oidc/callback/", sign_in.Callback.as_view(),
         name="oidc_authentication_callback"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("webhooks/github", webhooks.github, name="github_webhook"),
    path("", include("environments.urls")),
]
