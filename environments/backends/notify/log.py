import logging

from environments.backends.notify import Notice, Notifier

logger = logging.getLogger("preview_portal.notify")


class LogNotifier(Notifier):
    def send(self, notice: Notice, previous_ref: str = "") -> str:
        urls = " ".join(f"{name}={url}" for name, url in notice.urls.items())
        logger.info(
            "%s %s:%s is %s %s db=%s report=%s portal=%s",
            notice.kind, notice.project, notice.branch, notice.status, urls,
            notice.database or "-", notice.report_url or "-", notice.portal_url,
        )
        return previous_ref or "log"
