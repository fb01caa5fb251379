"""Credentials kept out of what the portal shows or logs: pages, the API, run logs, Slack and
pull-request comments are read by people who may not hold them."""

import re

# user[:password]@ after a scheme; git and curl split at the last "@" before the host.
_USERINFO = re.compile(r"(?<=://)[^/\s'\"]*@")


def userinfo(text: str) -> str:
    """`text` (a URL, or a message quoting one) without the credentials of its URLs, e.g. the
    token of https://x-access-token:TOKEN@github.com/acme/shop.git."""
    return _USERINFO.sub("", text)
