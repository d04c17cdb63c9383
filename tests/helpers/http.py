"""HTTP calls to the hub's admin and invite API (the `http` session fixture is in conftest)."""

from __future__ import annotations

from typing import Any

import aiohttp

from commhub import auth
from tests.conftest import SECRET


def admin_headers(room: str = "*") -> dict[str, str]:
    token = auth.issue(SECRET, room=room, identity="ops", grants=["admin"])
    return {"Authorization": f"Bearer {token}"}


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    """(status, body): the body as JSON when the hub says it is, else as text."""
    async with http.request(method, url, **kw) as resp:
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body
