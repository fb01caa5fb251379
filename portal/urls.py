from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from environments import webhooks
from environments.api import api

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("webhooks/github", webhooks.github, name="github_webhook"),
    path("", include("environments.urls")),
]
