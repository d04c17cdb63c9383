"""What the hub acknowledged survives `kill -9`: a real hub process, a chatty call, SIGKILL
in the middle of it, a restart on the same data dir."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from commhub import auth
from tests.conftest import SECRET
from tests.helpers.hubproc import HubProcess, free_port
from tests.wsclient import SignalClient

pytestmark = pytest.mark.e2e

HUB_ENV = {
    "COMMHUB_SECRET": SECRET,
    "COMMHUB_CAPTIONS": "false",
    "COMMHUB_TRANSLATION": "false",
    "COMMHUB_CHAT_HISTORY": "10000",
    "COMMHUB_RATE_LIMIT": "1000",
    "COMMHUB_RATE_BURST": "1000",
}


@pytest.fixture
async def hub_process(tmp_path: Path) -> AsyncIterator[HubProcess]:
    hub = HubProcess(tmp_path / "data", free_port(), HUB_ENV)
    await hub.start()
    yield hub
    await hub.close()


async def connect(hub: HubProcess, identity: str) -> SignalClient:
    token = auth.issue(SECRET, room="lobby", identity=identity)
    c = await SignalClient.connect(hub.url, token)
    await c.join()
    return c


async def chatter(c: SignalClient, name: str, sent: list[str]) -> None:
    """Send as fast as the hub takes them, never waiting for an acknowledgement."""
    n = 0
    with contextlib.suppress(Exception):  # the hub dies under us
        while True:
            ref = f"{name}-{n}"
            await c.send({"type": "chat", "text": f"{name} says {n}", "id": ref})
            sent.append(ref)
            n += 1
            if n % 20 == 0:
                await asyncio.sleep(0)  # let the reader take the echoes in


async def test_kill_9_in_a_chatty_call_loses_no_acknowledged_message(
    hub_process: HubProcess,
) -> None:
    hub = hub_process
    talkers = [await connect(hub, f"talker{i}") for i in range(3)]
    listener = await connect(hub, "listener")
    sent: list[str] = []
    tasks = [asyncio.create_task(chatter(c, f"t{i}", sent)) for i, c in enumerate(talkers)]

    def acked() -> dict[str, str]:
        """chat id per acknowledged client id: the sender's echo carries its ref."""
        return {
            m["ref"]: m["id"]
            for c in talkers
            for m in c.inbox
            if m["type"] == "chat" and "ref" in m
        }

    async with asyncio.timeout(120):
        while len(acked()) < 300:
            await asyncio.sleep(0.02)
    assert await hub.stop(signal.SIGKILL) == -signal.SIGKILL
    await asyncio.gather(*tasks)
    for c in [*talkers, listener]:
        await c.close(quiet=True)
    acknowledged = acked()
    heard = {m["id"] for m in listener.inbox if m["type"] == "chat"}
    assert len(acknowledged) >= 300 and len(sent) > len(acknowledged) - 1

    await hub.start()
    late = await connect(hub, "late")
    try:
        assert late.joined is not None
        kept = [m["id"] for m in late.joined["chat"]]
    finally:
        await late.close()
    missing = set(acknowledged.values()) - set(kept)
    assert not missing, f"{len(missing)} acknowledged messages lost: {sorted(missing)[:5]}"
    assert heard <= set(kept), "a message another participant got was lost"
    assert len(kept) == len(set(kept))
