import logging

from environments.backends.notify import Notice, Notifier

logger = logging.getLogger("preview_portal.notify")


class LogNotifier(Notifier):
    def send(self, notice: Notice, previous_ref: str = "") -> str:
        urls = " ".join(f"{name}={url}" for name, url in notice.urls.items())
        logger.info(
            "%s:%s %s (%s run) %s db=%s report=%s portal=%s",
            notice.project, notice.branch, notice.headline, notice.kind, urls,
            notice.database or "-", notice.report_url or "-", notice.portal_url,
        )
        return previous_ref or "log"

    def reply(self, text: str, thread_ref: str) -> None:
        logger.info("%s (thread %s)", text, thread_ref or "-")
