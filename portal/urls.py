from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from environments import webhooks
from environments.api import api
from portal import login

# The admin's own login page is a way in too: throttled the same.
admin.site.login_form = login.AdminLoginForm

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=login.LoginForm),
         name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("webhooks/github", webhooks.github, name="github_webhook"),
    path("", include("environments.urls")),
]
