"""The SDK on a hub of several nodes (signalling/PROTOCOL.md, "Several nodes"): it follows
`redirect` at once with the same query, stays connecting/reconnecting meanwhile, keeps its
entry URL for every reconnection after a drop, stops after three redirects in a row, and
retries `cluster_unavailable`.

Two kinds of set-up. Real nodes: two in-process hubs sharing a real redis-server and the
secret, each with its own node id and URL. And, for what a healthy cluster never does (a
redirect loop, a redirect to something that is not a node's base URL), a small node of the
test's own that routes badly: it upgrades, sends `redirect` and closes 4010, exactly as the
protocol says a node does, to a target the test chooses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from commhub import auth
from commhub.sdk import Refused, RoomClient
from commhub.sdk.signal import MAX_REDIRECTS, REDIRECT_CLOSE
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.hubproc import free_port
from tests.helpers.media import LOOPBACK
from tests.helpers.services import RedisServer
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

QUIET = {"captions": False, "translation": False, "imagery": False}


class Misrouting:
    """A node that routes badly: every upgrade gets `redirect {url: target}` (None: itself,
    a loop) and close 4010. Keeps the query and the time of every upgrade, and answers a
    probe (the same GET without upgrading) as a node does for a token it takes: 426."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.url_override: str | None = None  # send this `url` verbatim (hostile values)
        self.upgrades: list[tuple[float, dict[str, str]]] = []
        self.probes: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_get("/v1/signal", self._signal)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def queries(self) -> list[dict[str, str]]:
        return [q for _, q in self.upgrades]

    async def _signal(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        if not ws.can_prepare(request).ok:
            self.probes.append(dict(request.query))
            body = {"error": "upgrade_required", "message": "upgrade to a WebSocket"}
            return web.json_response(body, status=426)
        self.upgrades.append((time.monotonic(), dict(request.query)))
        await ws.prepare(request)
        url = self.url_override or self.target or self.url
        await ws.send_json({"type": "redirect", "url": url, "reason": "owner"})
        await ws.close(code=REDIRECT_CLOSE)
        return ws


@pytest.fixture
async def misrouting() -> AsyncIterator[Misrouting]:
    node = Misrouting()
    await node.server.start_server()
    yield node
    await node.server.close()


@pytest.fixture
async def clients() -> AsyncIterator[list[RoomClient]]:
    made: list[RoomClient] = []
    yield made
    for c in made:
        await c.close()


def states(c: RoomClient) -> list[str]:
    return [s for _, s, _ in c.state_log]


async def chats(sender: RoomClient, receiver: RoomClient, text: str) -> None:
    """`text` from sender reaches receiver (its own room, whatever node either is on)."""
    got = receiver.expect("chat", timeout=30.0, text=text)
    await sender.chat(text)
    msg = await got
    assert msg["from"]["identity"] == sender.joined["participant"]["identity"]  # type: ignore[index]


# -- against a node that routes badly ----------------------------------------------------


async def test_a_redirect_is_followed_at_once_with_the_same_query(
    start_hub: StartHub, misrouting: Misrouting, clients: list[RoomClient]
) -> None:
    hub = await start_hub(**QUIET)
    misrouting.target = hub.url
    # an any-room token: the node it is sent to needs `?room=` too
    token = auth.issue(SECRET, room="*", identity="ops", grants=["admin"])
    c = RoomClient(misrouting.url, token, room="plaza")
    clients.append(c)
    joined = await c.connect()
    assert joined["room"]["name"] == "plaza"
    assert c.url == misrouting.url and c.node_url == hub.url
    assert c.redirects == 1 and c.last_redirect == {
        "url": hub.url, "reason": "owner", "from": misrouting.url
    }  # fmt: skip
    assert misrouting.queries == [{"access_token": token, "room": "plaza"}]
    assert states(c) == ["connecting", "connected"]  # never closed in between
    assert c.received("redirect") == [{"type": "redirect", "url": hub.url, "reason": "owner"}]


async def test_after_a_drop_the_client_starts_again_at_its_entry_url(
    start_hub: StartHub, misrouting: Misrouting, clients: list[RoomClient]
) -> None:
    first, second = await start_hub(**QUIET), await start_hub(**QUIET)
    misrouting.target = first.url
    c = RoomClient(misrouting.url, first.token("lobby", "bob"), backoff=(0.2, 1.0))
    clients.append(c)
    await c.connect()
    assert c.node_url == first.url
    # The room moves: the entry now routes to `second`, and `first` goes away. Retrying
    # the node it was on would fail for ever; the entry URL brings it to `second`.
    misrouting.target = second.url
    await first.server.close()
    await wait_for(lambda: c.connected and c.node_url == second.url, 30.0, "rejoined on second")
    assert c.redirects == 2 and len(misrouting.upgrades) >= 2
    assert "closed" not in states(c) and "refused" not in states(c)
    assert states(c)[:3] == ["connecting", "connected", "reconnecting"]
    await chats(c, c, "back on the second node")


async def test_a_redirect_loop_is_followed_three_times_then_it_backs_off(
    start_hub: StartHub, misrouting: Misrouting, clients: list[RoomClient]
) -> None:
    # First connect: the fourth redirect in a row is not followed; connect() fails.
    c = RoomClient(misrouting.url, auth.issue(SECRET, room="lobby", identity="amy"))
    clients.append(c)
    with pytest.raises(ConnectionError, match="redirects in a row"):
        await c.connect()
    assert len(misrouting.upgrades) == MAX_REDIRECTS + 1
    assert c.redirects == MAX_REDIRECTS and c.state == "closed"
    assert states(c) == ["connecting", "closed"]

    # A joined client whose node goes away meets the loop while reconnecting: bursts of
    # four upgrades, a backoff after each, and it stays "reconnecting" until routing heals.
    hub, healed = await start_hub(**QUIET), await start_hub(**QUIET)
    misrouting.target = hub.url
    misrouting.upgrades.clear()
    d = RoomClient(misrouting.url, hub.token("lobby", "dan"), backoff=(1.0, 1.0))
    clients.append(d)
    await d.connect()
    misrouting.target = None
    misrouting.upgrades.clear()
    await hub.server.close()
    burst = MAX_REDIRECTS + 1
    await wait_for(lambda: len(misrouting.upgrades) >= 2 * burst + 1, 60.0, "three bursts")
    times = [t for t, _ in misrouting.upgrades]
    for start in (burst, 2 * burst):  # a burst starts after a backoff: at least half a delay
        assert times[start] - times[start - 1] >= 0.5, times
    misrouting.target = healed.url
    await wait_for(lambda: d.connected and d.node_url == healed.url, 30.0, "rejoined")
    assert "closed" not in states(d) and "refused" not in states(d)


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "http://127.0.0.1:9/evil", "http://127.0.0.1:9?x=1", "ftp://h", ""],
)
async def test_a_redirect_to_something_that_is_not_a_node_is_not_followed(
    misrouting: Misrouting, clients: list[RoomClient], url: str
) -> None:
    misrouting.url_override = url or " "
    # no schema checking (an SDK user's default): the client must judge the URL itself
    c = RoomClient(misrouting.url, auth.issue(SECRET, room="lobby", identity="eve"),
                   check_schemas=False)  # fmt: skip
    clients.append(c)
    with pytest.raises(ConnectionError, match="before joined"):
        await c.connect()
    assert c.redirects == 0 and c.node_url == misrouting.url
    assert len(misrouting.upgrades) == 1


# -- real nodes: two hubs sharing a redis-server -------------------------------------------


async def start_node(start_hub: StartHub, redis: RedisServer, node_id: str, **kw: Any) -> Running:
    """An in-process hub that is a node of the cluster: the shared Redis, secret and store,
    its own node id and port, and the URL it advertises (short leases: failover in seconds)."""
    port = free_port()
    return await start_hub(
        port=port, redis_url=redis.url, node_id=node_id, node_url=f"http://127.0.0.1:{port}",
        lease_ttl=2.0, ice_host_addresses=list(LOOPBACK), **{**QUIET, **kw},
    )  # fmt: skip


async def owned_by(node: Running, room: str) -> None:
    """`room` runs on `node` (it takes the lease now, before anyone comes)."""
    assert node.hub.cluster is not None
    assert await node.hub.cluster.claim_here(room)


async def test_a_client_sent_to_another_node_joins_on_the_owner_and_chats(
    start_hub: StartHub, redis_server: RedisServer, clients: list[RoomClient]
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    await owned_by(a, "plaza")
    alice = RoomClient(a.url, a.token("plaza", "alice"))
    clients.append(alice)
    await alice.connect()
    assert alice.node_url == a.url and alice.redirects == 0
    # Bob is given B: it redirects him to A at once.
    bob = RoomClient(b.url, b.token("plaza", "bob"))
    clients.append(bob)
    joined = await bob.connect()
    assert bob.url == b.url and bob.node_url == a.url
    assert bob.redirects == 1
    assert bob.last_redirect == {"url": a.url, "reason": "owner", "from": b.url}
    assert states(bob) == ["connecting", "connected"]  # never closed in between
    assert {p["identity"] for p in joined["participants"]} == {"alice"}
    await chats(bob, alice, "hello from the other node")
    await chats(alice, bob, "hello back")
    # one room, on one node
    room = a.hub.rooms.get("plaza")
    assert room is not None and len(room.participants) == 2
    assert b.hub.rooms.get("plaza") is None


async def test_when_the_owner_stops_clients_come_back_through_their_entry_url(
    start_hub: StartHub, redis_server: RedisServer, clients: list[RoomClient]
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    await owned_by(a, "plaza")
    alice = RoomClient(a.url, a.token("plaza", "alice"), backoff=(0.2, 1.0))
    bob = RoomClient(b.url, b.token("plaza", "bob"), backoff=(0.2, 1.0))
    clients.extend((alice, bob))
    await alice.connect()
    await bob.connect()
    assert bob.node_url == a.url
    await chats(alice, bob, "before the move")
    # A stops (its leases go with it). Bob's entry URL, B, routes him again: the room now
    # runs on B. Retrying A, the node he was on, would fail for ever.
    await a.server.close()
    await wait_for(lambda: bob.connected and bob.node_url == b.url, 40.0, "bob back on B")
    assert "closed" not in states(bob) and "refused" not in states(bob)
    assert bob.reconnects == 1 and bob.redirects == 1  # no redirect this time: B is the owner
    assert b.hub.rooms.get("plaza") is not None
    # the room goes on there, with its history (the nodes share the store)
    assert bob.joined is not None
    assert "before the move" in [m["text"] for m in bob.joined["chat"]]
    carol = RoomClient(b.url, b.token("plaza", "carol"))
    clients.append(carol)
    await carol.connect()
    assert carol.node_url == b.url and carol.redirects == 0
    await chats(carol, bob, "the room goes on at B")
    await chats(bob, carol, "it does")


async def test_a_drained_node_sends_its_participants_to_the_next_owner_at_once(
    start_hub: StartHub, redis_server: RedisServer, clients: list[RoomClient]
) -> None:
    a = await start_node(start_hub, redis_server, "node-a", drain_timeout=0.0)
    b = await start_node(start_hub, redis_server, "node-b")
    await owned_by(a, "plaza")
    # a long backoff: coming back in time proves the redirect was followed without one
    alice = RoomClient(a.url, a.token("plaza", "alice"), backoff=(30.0, 30.0))
    bob = RoomClient(b.url, b.token("plaza", "bob"), backoff=(30.0, 30.0))
    clients.extend((alice, bob))
    await alice.connect()
    await bob.connect()
    await a.hub.drain()  # the room is handed to B: `redirect {reason: drain}` to everyone
    for c in (alice, bob):
        await wait_for(lambda c=c: c.connected and c.node_url == b.url, 20.0, "moved to B")  # type: ignore[misc]
        assert c.last_redirect is not None and c.last_redirect["reason"] == "drain"
        assert c.last_redirect["url"] == b.url and c.last_redirect["from"] == a.url
        assert c.url in (a.url, b.url) and c.reconnects == 1
        # reconnecting (reason: redirect), then connected: never closed
        assert states(c)[-2:] == ["reconnecting", "connected"], c.state_log
        assert [r for _, s, r in c.state_log if s == "reconnecting"] == ["redirect"]
    await chats(alice, bob, "after the drain")


async def test_without_redis_a_node_refuses_a_room_it_does_not_hold_until_redis_is_back(
    start_hub: StartHub, redis_server: RedisServer, clients: list[RoomClient]
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    await owned_by(a, "plaza")
    alice = RoomClient(a.url, a.token("plaza", "alice"))
    clients.append(alice)
    await alice.connect()
    await redis_server.stop()
    # B cannot tell where the room runs: 503 cluster_unavailable, to be retried.
    bob = RoomClient(b.url, b.token("plaza", "bob"))
    clients.append(bob)
    with pytest.raises(Refused) as refused:
        await bob.connect()
    assert (refused.value.code, refused.value.status) == ("cluster_unavailable", 503)
    assert refused.value.retryable
    assert bob.state == "refused" and bob.node_url == b.url
    # A still holds it: a client that reaches A directly joins meanwhile
    dora = RoomClient(a.url, a.token("plaza", "dora"))
    clients.append(dora)
    await dora.connect()
    await redis_server.start()
    # Once the nodes are back on Redis, the same entry gets in. Redis came back empty: A
    # takes its lease back at its next heartbeat, unless B placed the room first; then A
    # hands its participants over. Either way the room ends on one node, and nobody was
    # closed on the way.
    joined = False
    async with asyncio.timeout(60):
        while not joined:
            bob = RoomClient(b.url, b.token("plaza", "bob"))
            clients.append(bob)
            try:
                await bob.connect()
                joined = True
            except Refused as exc:
                assert exc.code == "cluster_unavailable", exc
                await asyncio.sleep(0.5)
    together = (alice, bob, dora)
    await wait_for(
        lambda: all(c.connected for c in together) and len({c.node_url for c in together}) == 1,
        30.0,
        "everyone on one node",
    )
    if alice.node_url != a.url:
        # B won the race: A sent its participants there (`moved`), or, when B was not yet
        # registered again, told them to come back (`server_shutdown`): their entry, A,
        # then sent them to B (`owner`)
        assert alice.last_redirect is not None and alice.last_redirect["url"] == b.url
        assert alice.last_redirect["reason"] in ("moved", "owner")
    assert not {"closed", "refused"} & set(states(alice) + states(dora))
    await chats(bob, alice, "redis is back")
    await chats(dora, bob, "all here")


def test_refusals_to_retry() -> None:
    assert Refused("cluster_unavailable", "", 503).retryable
    assert Refused("shutting_down", "", 503).retryable
    assert not Refused("token_expired", "", 401).retryable
