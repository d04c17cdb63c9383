"""Desks in tests: make a desk through the admin API, a visitor through the public link, an
agent with an agent token; each a real WebSocket client of the hub."""

from __future__ import annotations

from typing import Any

import aiohttp

from commhub.desks.tokens import issue_agent
from tests.conftest import SECRET, Running
from tests.helpers.http import admin_headers, call
from tests.wsclient import SignalClient


async def make_desk(
    hub: Running, http: aiohttp.ClientSession, name: str, **spec: Any
) -> dict[str, Any]:
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/desks", json={"name": name, **spec},
        headers=admin_headers(),
    )  # fmt: skip
    assert status == 201, body
    return dict(body)


async def visit(
    hub: Running, http: aiohttp.ClientSession, desk: str, name: str, speak: str, **more: Any
) -> tuple[int, Any]:
    body = {"name": name, "speak": speak, **more}
    return await call(http, "POST", f"{hub.url}/v1/desks/{desk}/visit", json=body)


async def visitor_token(
    hub: Running, http: aiohttp.ClientSession, desk: str, name: str, speak: str, **more: Any
) -> str:
    status, body = await visit(hub, http, desk, name, speak, **more)
    assert status == 200, body
    return str(body["token"])


async def connect(hub: Running, token: str) -> SignalClient:
    c = await SignalClient.connect(hub.url, token)
    hub.clients.append(c)
    return c


async def visitor(
    hub: Running, http: aiohttp.ClientSession, desk: str, name: str, speak: str, **more: Any
) -> tuple[SignalClient, dict[str, Any]]:
    """A visitor in the queue: its client and its desk_waiting reply."""
    c = await connect(hub, await visitor_token(hub, http, desk, name, speak, **more))
    reply = await c.request({"type": "desk_join"}, timeout=15)
    assert reply["type"] == "desk_waiting", reply
    return c, reply


def agent_token(desk: str, identity: str, languages: list[str], name: str | None = None) -> str:
    return issue_agent(
        SECRET, desk=desk, identity=identity, name=name or identity, speak=languages[0],
        languages=languages,
    )  # fmt: skip


async def agent(
    hub: Running, desk: str, identity: str, languages: list[str], status: str = "available"
) -> tuple[SignalClient, dict[str, Any]]:
    """A signed-in agent: its client and its desk_state reply."""
    c = await connect(hub, agent_token(desk, identity, languages))
    reply = await c.request({"type": "desk_join", "status": status}, timeout=15)
    assert reply["type"] == "desk_state", reply
    return c, reply


async def room_client(hub: Running, assigned: dict[str, Any]) -> SignalClient:
    """Joins the session room a desk_assigned names, with its token."""
    c = await connect(hub, assigned["token"])
    joined = await c.join()
    assert joined["room"]["name"] == assigned["room"]
    return c
