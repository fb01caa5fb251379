import os

from django.core.wsgi import get_wsgi_application

from portal import startup

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
startup.refuse_without_secrets()
application = get_wsgi_application()
