from django.urls import path

from environments import token_views, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("", views.dashboard, name="dashboard"),
    path("launch", views.launch, name="launch"),
    path("projects/<str:name>/branches", views.branch_options, name="branch_options"),
    path("environments/<int:pk>", views.environment, name="environment"),
    path("environments/<int:pk>/live", views.environment_live, name="environment_live"),
    path("environments/<int:pk>/redeploy", views.redeploy, name="environment_redeploy"),
    path("environments/<int:pk>/teardown", views.teardown, name="environment_teardown"),
    path("environments/<int:pk>/smoke", views.smoke, name="environment_smoke"),
    path("environments/<int:pk>/extend", views.extend, name="environment_extend"),
    path("environments/<int:pk>/pin", views.pin, name="environment_pin"),
    path("environments/<int:pk>/qa", views.qa_signoff, name="environment_qa"),
    path("environments/<int:pk>/logs/<str:component>", views.component_logs,
         name="environment_logs"),
    path("pool", views.pool, name="pool"),
    path("pool/resize", views.pool_resize, name="pool_resize"),
    path("health", views.health, name="health"),
    path("health/reconcile", views.health_reconcile, name="health_reconcile"),
    path("reports/<path:key>", views.report, name="report"),
    path("tokens", token_views.token_list, name="tokens"),
    path("tokens/new", token_views.token_create, name="token_create"),
    path("tokens/<int:pk>/revoke", token_views.token_revoke, name="token_revoke"),
]
