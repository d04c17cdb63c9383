"""The SignalChannel itself (the SDK's and the tests' signalling client): replies matched by
`ref` among interleaved events, a schema violation raised at once, refusals read."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from commhub import protocol
from commhub.sdk import (
    ChannelClosed,
    Refused,
    RoomClient,
    SchemaViolation,
    SignalChannel,
    SignalError,
)
from commhub.sdk.signal import check_server_message
from tests.conftest import Running, StartHub
from tests.helpers.wait import wait_for

Message = dict[str, Any]
EXAMPLES = Path(__file__).parents[1] / "signalling" / "examples"


def a_chat(**changes: Any) -> Message:
    """A chat exactly as the hub builds it, then changed."""
    sender = {"id": "PA_aB3dE5fG7h", "identity": "u-minji", "name": "Minji"}
    msg = protocol.chat(chat_id="CH_x1y2z3a4b5", sender=sender, text="hi", lang="en", ts=1.0)
    msg.update(changes)
    return {k: v for k, v in msg.items() if v is not None}


class FakeHub:
    """A tiny WebSocket server on loopback that plays a script: a message to send, or None
    to wait for the client's next message (kept in `got`)."""

    def __init__(self, *script: Message | None) -> None:
        self.script = script
        self.got: list[str] = []
        app = web.Application()
        app.router.add_get("/v1/signal", self._signal)
        self.server = TestServer(app, host="127.0.0.1")

    async def _signal(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for step in self.script:
            if step is None:
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    return ws
                self.got.append(msg.data)
            else:
                await ws.send_json(step)
        async for msg in ws:  # then just listen, as a hub does
            if msg.type == WSMsgType.TEXT:
                self.got.append(msg.data)
        return ws

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


@pytest.fixture
async def fake_hub() -> AsyncIterator[list[FakeHub]]:
    hubs: list[FakeHub] = []
    yield hubs
    for h in hubs:
        await h.server.close()


async def serve(hubs: list[FakeHub], *script: Message | None) -> FakeHub:
    h = FakeHub(*script)
    await h.server.start_server()
    hubs.append(h)
    return h


async def test_replies_are_matched_by_ref_among_interleaved_events(hub: Running) -> None:
    alice = await hub.joined(identity="alice")
    bob = await hub.joined(identity="bob")
    await bob.send({"type": "chat", "text": "from bob"})
    # events wait in alice's channel, unread, while she asks things
    await wait_for(lambda: bool(alice.received("chat")), what="bob's chat at alice")

    pong = await alice.request({"type": "ping", "id": "p1"})
    assert (pong["type"], pong["ref"]) == ("pong", "p1")
    mine = await alice.request({"type": "chat", "text": "mine"})
    assert (mine["type"], mine["text"], mine["from"]["id"]) == ("chat", "mine", alice.pid)
    assert mine["ref"].startswith("req-")
    updated = await alice.request({"type": "set_language", "id": "lang", "speak": "ko"})
    assert updated["type"] == "participant_updated" and updated["participant"]["speak"] == "ko"
    with pytest.raises(SignalError) as refused:
        await alice.request({"type": "join", "id": "again"})
    assert (refused.value.code, refused.value.ref) == ("already_joined", "again")

    # the events the replies overtook are all still there, in order
    joined = await alice.expect("participant_joined")
    assert joined["participant"]["id"] == bob.pid
    chat = await alice.expect("chat")
    assert (chat["text"], chat["from"]["id"]) == ("from bob", bob.pid)
    assert "ref" not in chat  # a chat from someone else is an event, not a reply

    # two requests in flight at once get their own replies
    replies = await asyncio.gather(
        *(alice.request({"type": "ping", "id": f"x{i}"}) for i in range(5))
    )
    assert [r["ref"] for r in replies] == [f"x{i}" for i in range(5)]
    bye = await alice.request({"type": "leave", "id": "bye"})
    assert (bye["type"], bye["reason"]) == ("bye", "left")
    assert await alice.closed() == 1000
    with pytest.raises(ChannelClosed):  # at once, not at the timeout
        await alice.expect("chat", timeout=60)


async def test_a_violation_fails_the_waiting_expect_at_once(
    fake_hub: list[FakeHub], incoming_checked: Any
) -> None:
    bad = a_chat(text=None)  # a real chat, without its text
    h = await serve(fake_hub, protocol.pong(time.time(), ref="p0"), None, bad)
    c = await SignalChannel.connect(h.url, "token", check=True)
    try:
        assert (await c.expect("pong", ref="p0"))["type"] == "pong"
        waiting = asyncio.ensure_future(c.expect("chat", timeout=60))
        await c.send({"type": "ping", "id": "p1"})  # the fake hub answers with the bad chat
        with pytest.raises(SchemaViolation) as seen:
            await waiting
        assert "text" in seen.value.problem and seen.value.raw == bad
        assert c.violations == [seen.value]
        assert not c.received("chat")  # never delivered
        await c.send({"type": "ping"})  # raised once: the channel goes on
    finally:
        await c.close()
    # the suite's own net caught it too (it would fail this test at teardown)
    assert len(incoming_checked.seen) == 1 and "text" in incoming_checked.seen[0]
    incoming_checked.seen.clear()


async def test_a_violation_nobody_waited_for_is_raised_by_the_next_call(
    fake_hub: list[FakeHub], incoming_checked: Any
) -> None:
    h = await serve(fake_hub, a_chat(), a_chat(surprise=1))
    c = await SignalChannel.connect(h.url, "token", check=True)
    await wait_for(lambda: bool(c.violations), what="the violation")
    with pytest.raises(SchemaViolation):
        await c.send({"type": "ping"})
    assert (await c.expect("chat"))["text"] == "hi"  # the valid one before it
    await c.close()
    incoming_checked.seen.clear()

    # unread until the end, close raises it
    h = await serve(fake_hub, {"type": "no_such_type"})
    c = await SignalChannel.connect(h.url, "token", check=True)
    await wait_for(lambda: bool(c.violations), what="the violation")
    with pytest.raises(SchemaViolation, match="no_such_type"):
        await c.close()
    incoming_checked.seen.clear()


async def test_checking_off_delivers_what_came(fake_hub: list[FakeHub]) -> None:
    h = await serve(fake_hub, a_chat(text=None))
    c = await SignalChannel.connect(h.url, "token", check=False)
    assert "text" not in await c.expect("chat")
    assert not c.violations
    await c.close()


async def test_the_sdk_with_checking_on_fails_its_join_at_once(
    fake_hub: list[FakeHub], incoming_checked: Any
) -> None:
    joined = json.loads((EXAMPLES / "server-joined.json").read_text())
    assert check_server_message(joined) is None
    joined["room"] = "r"  # an object in the schema
    h = await serve(fake_hub, None, joined)
    c = RoomClient(h.url, "token", reconnect=False, check_schemas=True)
    with pytest.raises(SchemaViolation, match="room"):
        await c.connect()  # not after its 30 s joined timeout
    assert c.state == "closed" and c.reason == "SchemaViolation"
    assert '"type": "join"' in h.got[0]
    incoming_checked.seen.clear()


async def test_refusals_are_read(start_hub: StartHub) -> None:
    hub = await start_hub(max_connections_per_ip=1)
    with pytest.raises(Refused) as bad:
        await SignalChannel.connect(hub.url, hub.token() + "x")
    assert (bad.value.status, bad.value.code, bad.value.retryable) == (
        401,
        "token_bad_signature",
        False,
    )
    first = await hub.client()
    # over the limit: the upgrade gets 429, and the same request without upgrading says the
    # token is fine (426): worth trying again later
    with pytest.raises(Refused) as later:
        await SignalChannel.connect(hub.url, hub.token(identity="bob"))
    assert (later.value.status, later.value.code, later.value.retryable) == (
        426,
        "upgrade_required",
        True,
    )
    await first.join()
