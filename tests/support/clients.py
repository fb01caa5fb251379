"""Django test clients signed in as someone."""

from django.test import Client

# What a partial that polls carries (htmx): pages poll only while work runs.
POLL = 'hx-trigger="every'


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client
