"""Absolute links to the portal's own pages, for what leaves the portal: GitHub statuses, Slack
messages, report links."""

from django.conf import settings
from django.urls import reverse

# The app's pages are mounted at the root (portal/urls.py). Reversing them in the app's own
# URLconf spares every worker and command the root one, whose API (django-ninja, pydantic) and
# sign-in (mozilla-django-oidc) cost ~0.3 s of CPU to import.
URLCONF = "environments.urls"


def page_url(name: str, *args: object, query: str = "") -> str:
    path = reverse(name, args=args, urlconf=URLCONF)
    return settings.PORTAL_BASE_URL + path + (f"?{query}" if query else "")
