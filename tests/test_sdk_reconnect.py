"""SDK clients that recover: a hub killed and restarted (its own process, same port), a hub
that shuts down politely, a dropped socket; refusals that must not be retried."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from commhub import auth
from commhub.app import create_app
from commhub.config import Settings
from commhub.sdk import Refused, RoomClient
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.hubproc import HubProcess, free_port
from tests.helpers.media import LOOPBACK, ToneTrack
from tests.helpers.sdk import Ears, close_all, now
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

HUB_ENV = {
    "COMMHUB_SECRET": SECRET,
    "COMMHUB_CHECK_OUTGOING": "1",
    "COMMHUB_ICE_HOST_ADDRESSES": json.dumps(list(LOOPBACK)),
    "COMMHUB_CAPTIONS": "false",
    "COMMHUB_TRANSLATION": "false",
    "COMMHUB_IMAGERY": "false",  # on, it keeps the pair in sfu; these tests restart a p2p pair
}


class Watch:
    """Samples each client's state and its socket every 10 ms: the state shown must never
    be "connected" while the socket is closed."""

    def __init__(self, *clients: RoomClient) -> None:
        self.clients = clients
        self.samples: list[tuple[float, int, str, bool]] = []  # (time, client, state, closed)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            for i, c in enumerate(self.clients):
                ws = c._ws
                self.samples.append((now(), i, c.state, ws is None or ws.closed))
            await asyncio.sleep(0.01)

    def connected_between(self, start: float, end: float) -> list[tuple[float, int, str, bool]]:
        return [s for s in self.samples if start <= s[0] <= end and s[2] == "connected"]

    def lies(self) -> list[tuple[float, int, str, bool]]:
        return [s for s in self.samples if s[2] == "connected" and s[3]]

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def hub_process(tmp_path: Path) -> AsyncIterator[HubProcess]:
    hub = HubProcess(tmp_path / "data", free_port(), HUB_ENV)
    await hub.start()
    yield hub
    await hub.close()


def sdk(url: str, identity: str, **kw: object) -> RoomClient:
    token = auth.issue(SECRET, room="lobby", identity=identity, speak="ko", read="en")
    return RoomClient(url, token, ice_hosts=LOOPBACK, p2p=True, **kw)  # type: ignore[arg-type]


async def participants(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as resp:
        return int((await resp.json())["participants"])


@pytest.mark.parametrize("how", ["killed", "terminated"])
async def test_clients_come_back_after_a_hub_restart(hub_process: HubProcess, how: str) -> None:
    hub = hub_process
    a, b = sdk(hub.url, "alice"), sdk(hub.url, "bob")
    ears = {"a": Ears(a), "b": Ears(b)}
    watch = Watch(a, b)
    try:
        await b.publish(ToneTrack())  # one publishes before joining, one after
        await a.connect()
        await b.connect()
        await a.publish(ToneTrack())
        await a.set_language(read="es")  # a rejoin must keep what was chosen since
        await wait_for(lambda: a.mode == b.mode == "p2p")
        start = now()
        await wait_for(lambda: ears["a"].heard(b, start) and ears["b"].heard(a, start))
        first_ids = (a.pid, b.pid)

        down = now()
        shutdown = a.expect("server_shutdown", timeout=30)
        await hub.stop(signal.SIGKILL if how == "killed" else signal.SIGTERM)
        if how == "terminated":
            assert (await shutdown)["reconnect_after"] == 5
        else:
            shutdown.cancel()
        await wait_for(lambda: a.state == b.state == "reconnecting", timeout=10)
        noticed = now()
        await asyncio.sleep(1.0)  # the hub stays down a moment: the clients keep trying
        restarting = now()
        await hub.start()
        up = now()
        await wait_for(lambda: a.state == b.state == "connected", timeout=60, what="rejoined")
        back = now()
        start = now()
        await wait_for(
            lambda: ears["a"].heard(b, start) and ears["b"].heard(a, start), what="audio again"
        )
        flowing = now()

        # the same identity (a new participant id: a new hub), languages and tracks
        assert (a.pid, b.pid) != first_ids
        assert a.joined is not None and a.joined["participant"]["identity"] == "alice"
        assert (a.joined["participant"]["speak"], a.joined["participant"]["read"]) == ("ko", "es")
        assert await participants(hub.url) == 2
        assert a.mode == b.mode == "p2p"
        # the state never said connected while the socket was closed, nor while the hub was
        # down once the clients had noticed it
        assert watch.lies() == []
        assert watch.connected_between(noticed, up) == []
        for c in (a, b):
            states = [s for _, s, _ in c.state_log]
            assert states == ["connecting", "connected", "reconnecting", "connected"], states
            assert c.reconnects == 1
        if how == "terminated":  # not before the hub said it could take us back
            back_at = [t for t, s, _ in a.state_log if s == "connected"][-1]
            reconnecting_at = next(t for t, s, _ in a.state_log if s == "reconnecting")
            assert back_at - reconnecting_at >= 5.0
        print(
            f"\n{how}: noticed {noticed - down:.2f} s after the stop; the hub took "
            f"{up - restarting:.2f} s to start; rejoined "
            f"{back - up:.2f} s after the hub listened again; audio both ways "
            f"{flowing - back:.2f} s after the rejoin"
        )
    finally:
        await watch.close()
        await close_all(a, b, *ears.values())


async def test_a_dropped_socket_rejoins_the_same_room(no_leaks: None, start_hub: StartHub) -> None:
    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False, imagery=False
    )
    a = sdk(hub.url, "alice", backoff=(1.0, 2.0))
    b = sdk(hub.url, "bob")
    ears = {"a": Ears(a), "b": Ears(b)}
    try:
        await a.connect(name="Alice")
        await b.connect()
        await a.publish(ToneTrack())
        await b.publish(ToneTrack())
        start = now()
        await wait_for(lambda: ears["a"].heard(b, start) and ears["b"].heard(a, start))

        # the network drops a's socket (no close frame, no bye)
        room = hub.hub.rooms.get("lobby")
        assert room is not None
        conn = room.participants[a.pid].conn
        conn.transport.abort()  # type: ignore[attr-defined]
        await wait_for(lambda: a.state == "reconnecting", timeout=5)
        with pytest.raises(ConnectionError):  # refused visibly, not silently lost
            await a.chat("are you there?")
        await wait_for(lambda: a.state == "connected", timeout=20)
        assert a.joined is not None and a.joined["participant"]["name"] == "Alice"
        start = now()
        await wait_for(lambda: ears["a"].heard(b, start) and ears["b"].heard(a, start))
        assert hub.hub.rooms.participant_count() == 2
        sent = a.expect("chat")
        await a.chat("back again")
        assert (await sent)["text"] == "back again"
    finally:
        await close_all(a, b, *ears.values())


async def test_refusals_say_why_and_are_not_retried(start_hub: StartHub) -> None:
    hub = await start_hub(room_capacity=1, token_leeway=0, captions=False, translation=False)
    expired = auth.issue(SECRET, room="lobby", identity="late", ttl=1)
    other = auth.issue("another-secret-" + "y" * 40, room="lobby", identity="forger")
    for token, code in ((expired, "token_expired"), (other, "token_bad_signature")):
        c = RoomClient(hub.url, token, ice_hosts=LOOPBACK)
        if code == "token_expired":
            await asyncio.sleep(1.5)
        with pytest.raises(Refused) as refused:
            await c.connect()
        assert refused.value.code == code and refused.value.status == 401
        assert (c.state, c.reason) == ("refused", code)
        await c.close()
    first = sdk(hub.url, "alice")
    second = sdk(hub.url, "bob")
    try:
        await first.connect()
        with pytest.raises(Refused) as refused:
            await second.connect()
        assert refused.value.code == "room_full" and not refused.value.retryable
        assert second.state == "refused"
    finally:
        await close_all(first, second)


async def test_replaced_is_final(no_leaks: None, hub: Running) -> None:
    a, again = sdk(hub.url, "alice"), sdk(hub.url, "alice")
    try:
        await a.connect()
        await again.connect()  # the same identity from elsewhere: the older one goes
        await wait_for(lambda: a.state == "closed", timeout=10)
        assert a.reason == "replaced"
        await asyncio.sleep(1.0)  # and it does not come back to fight over the seat
        assert a.state == "closed" and again.state == "connected"
        assert hub.hub.rooms.participant_count() == 1
    finally:
        await close_all(a, again)


async def test_a_restarted_hub_with_another_secret_refuses_for_good(
    settings: Settings, start_hub: StartHub
) -> None:
    first = await start_hub(captions=False, translation=False, shutdown_timeout=1.0)
    port = first.server.port
    assert port is not None
    states: list[tuple[str, str | None]] = []
    c = sdk(first.url, "alice", on_state=lambda s, r: states.append((s, r)))
    second: TestServer | None = None
    try:
        await c.connect()
        await first.server.close()  # a polite shutdown: server_shutdown, then the close
        app = create_app(settings.replace(captions=False, translation=False), "z" * 40)
        second = TestServer(app, host="127.0.0.1", port=port)
        await second.start_server()
        await wait_for(lambda: c.state == "refused", timeout=30)
        assert c.reason == "token_bad_signature"
        assert states[-2:] == [("reconnecting", "shutdown"), ("refused", "token_bad_signature")]
    finally:
        await c.close()
        if second is not None:
            await second.close()
