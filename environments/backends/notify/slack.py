"""Slack through the Web API (slack_sdk): one message per run, posted as the run starts and
updated in place (chat.update on the saved ts) as it ends. The ref saved on the run is
"<channel id> <ts>": chat.update wants the channel's id, which PORTAL_SLACK_CHANNEL may not be.
Other news of the environment (QA's sign-off) is a reply in the thread of its latest message."""

from typing import Any

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from environments.backends import BackendError
from environments.backends.notify import Notice, Notifier

# Slack's own word that trying again later can help.
RETRYABLE = {"ratelimited", "rate_limited", "service_unavailable", "internal_error",
             "fatal_error", "request_timeout"}
EMOJI = {"ready": ":white_check_mark:", "degraded": ":warning:", "failed": ":x:",
         "torn_down": ":wastebasket:"}
HEADER_CHARS = 150  # Slack's limit for a header block


class SlackNotifier(Notifier):
    def __init__(self) -> None:
        self.channel = settings.PORTAL_SLACK_CHANNEL
        self.client = WebClient(
            token=settings.SLACK_BOT_TOKEN, timeout=10,
            base_url=settings.PORTAL_SLACK_API_URL.rstrip("/") + "/",
        )

    def send(self, notice: Notice, previous_ref: str = "") -> str:
        message = {"text": summary(notice), "blocks": blocks(notice)}
        if previous_ref:
            channel, _, ts = previous_ref.partition(" ")
            try:
                return self._call(self.client.chat_update, channel=channel, ts=ts, **message)
            except _Gone:
                pass  # deleted by someone: a new message is better than none
        return self._call(self.client.chat_postMessage, channel=self.channel, **message)

    def reply(self, text: str, thread_ref: str) -> None:
        channel, _, ts = thread_ref.partition(" ")
        thread = {"channel": channel, "thread_ts": ts} if ts else {"channel": self.channel}
        self._call(self.client.chat_postMessage, text=_escaped(text), **thread)

    @staticmethod
    def _call(method: Any, **arguments: Any) -> str:
        try:
            answer = method(**arguments)
        except SlackApiError as exc:
            error, status = exc.response.get("error", ""), exc.response.status_code
            if error == "message_not_found":
                raise _Gone from exc
            raise BackendError(
                f"Slack answered {error or f'HTTP {status}'}",
                retryable=error in RETRYABLE or status == 429 or status >= 500,
            ) from exc
        except (SlackClientError, OSError) as exc:
            raise BackendError(f"Slack is unreachable: {exc}", retryable=True) from exc
        return f"{answer['channel']} {answer['ts']}"


class _Gone(Exception):
    """The message to update no longer exists."""


def _escaped(text: str) -> str:
    """Slack's mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(notice: Notice) -> str:
    """The plain text of the message (notifications, clients without blocks)."""
    return f"{notice.project} {notice.branch}: {notice.headline}"


def blocks(notice: Notice) -> list[dict[str, Any]]:
    emoji = EMOJI.get(notice.status, ":hourglass_flowing_sand:") if notice.finished else ":rocket:"
    header = f"{emoji} {summary(notice)}"
    fields = [
        ("Project", _escaped(notice.project)),
        ("Branch", f"`{_escaped(notice.branch)}`"),
        ("Status", f"{notice.status.replace('_', ' ')} ({notice.kind} run)"),
        ("Database", f"`{_escaped(notice.database)}`" if notice.database else "–"),
    ]
    urls = [f"{_escaped(name)}: <{url}>" for name, url in notice.urls.items()]
    links = [f"<{notice.portal_url}|Open in the portal>"]
    if notice.report_url:
        links.insert(0, f"<{notice.report_url}|Smoke report>")
    found: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:HEADER_CHARS]}},
        {"type": "section",
         "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{value}"} for label, value in fields]},
        {"type": "section",
         "text": {"type": "mrkdwn", "text": "*URLs*\n" + ("\n".join(urls) or "–")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": " · ".join(links)}},
    ]
    if notice.detail:
        found.append({"type": "context",
                      "elements": [{"type": "mrkdwn", "text": _escaped(notice.detail)[:2000]}]})
    return found
