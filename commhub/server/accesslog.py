"""The access log, without the bearer secrets that travel in URLs (tokens, invite codes)."""

from __future__ import annotations

import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

SECRET_PARAMS = ("access_token", "token", "invite")
_SECRET_QUERY = re.compile(r"(?<=[?&])(" + "|".join(SECRET_PARAMS) + r")=[^&#]*")
_SECRET_PATH = re.compile(r"^/(join|v1/invites)/[^/?#]+")


def redact(target: str) -> str:
    """A request target (path and query) with its secrets replaced."""
    target = _SECRET_PATH.sub(lambda m: f"/{m.group(1)}/REDACTED", target)
    return _SECRET_QUERY.sub(lambda m: f"{m.group(1)}=REDACTED", target)


class AccessLog(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %s %.3fs "%s" "%s"',
            request.remote or "-",
            request.method,
            redact(request.raw_path),
            *request.version,
            response.status,
            response.body_length,
            time,
            redact(request.headers.get("Referer", "-")),
            request.headers.get("User-Agent", "-"),
        )
