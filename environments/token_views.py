"""The API tokens page: a signed-in person makes, sees and revokes their own tokens. A new token
is shown once, on the page the creation redirects to, and never again."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from environments import roles, tokens
from environments.models import ApiToken
from environments.views import requires

NEW_TOKEN = "new_api_token"  # session key: the token just made, popped by the next page
NAME_CHARS = ApiToken._meta.get_field("name").max_length


@require_GET
@requires(roles.VIEW)
def token_list(request: HttpRequest) -> HttpResponse:
    return render(request, "environments/tokens.html", {
        "tokens": ApiToken.objects.filter(user=request.user),
        "new_token": request.session.pop(NEW_TOKEN, None),
        "now": timezone.now(),
        "today": timezone.now().date(),
    })


@require_POST
@requires(roles.VIEW)
def token_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "").strip()
    try:
        expires_at = _expiry(request.POST.get("expires_on", "").strip())
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("tokens")
    if not 1 <= len(name) <= NAME_CHARS:
        messages.error(request, f"Give the token a name of 1 to {NAME_CHARS} characters.")
        return redirect("tokens")
    request.session[NEW_TOKEN] = {"name": name,
                                  "token": tokens.issue(request.user, name, expires_at)}
    return redirect("tokens")


@require_POST
@requires(roles.VIEW)
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    revoked = tokens.revoke(request.user, pk)
    if revoked is None:
        messages.error(request, "You have no such token (revoked already?).")
    else:
        messages.success(request, f"Token {revoked.prefix}… ({revoked.name}) revoked: the API "
                                  "refuses it from now on.")
    return redirect("tokens")


def _expiry(text: str) -> datetime | None:
    """The end of the chosen day (UTC): a token "expiring on" a day works through that day."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD).") from None
    if day < timezone.now().date():
        raise ValueError("The expiry date has passed already.")
    return datetime.combine(day, time.max, tzinfo=UTC)
