"""Several nodes in one process: two or three real hubs sharing a real redis-server and one
database. Rooms have one owner; a node asked for another's room redirects; leases move when
a node drains, leaves or loses its lease (tests/test_cluster_processes.py kills processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from commhub import auth
from commhub.cluster import Cluster
from tests.conftest import SECRET, Running, StartHub, run_cli
from tests.helpers.desks import agent_token, make_desk, visit
from tests.helpers.http import admin_headers, call
from tests.helpers.hubproc import clean_env, free_port
from tests.helpers.services import RedisServer
from tests.wsclient import SignalClient

TTL = 1.5  # short leases: failover within seconds


async def start_node(start_hub: StartHub, redis: RedisServer, name: str, **kw: Any) -> Running:
    port = free_port()
    return await start_hub(
        port=port,
        redis_url=redis.url,
        node_id=name,
        node_url=f"http://127.0.0.1:{port}",
        **{"lease_ttl": TTL, "captions": False, "translation": False, **kw},
    )


async def until(read: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool]) -> None:
    """Poll an async reading until `ok` holds (generous: the machine may be loaded)."""
    async with asyncio.timeout(20):
        while not ok(await read()):
            await asyncio.sleep(0.1)


def cluster_of(node: Running) -> Cluster:
    assert node.hub.cluster is not None
    return node.hub.cluster


async def follow(
    url: str, token: str, hello: dict[str, Any]
) -> tuple[SignalClient, str, dict[str, Any], list[str]]:
    """Connect like a client written from PROTOCOL.md: send `hello`, follow `redirect`
    (close 4010) to the node it names. Returns the client, the node URL it stayed on, the
    hub's first answer there and the redirects seen."""
    hops: list[str] = []
    for _ in range(3):
        c = await SignalClient.connect(url, token)
        await c.send(hello)
        first = await c.expect(None, timeout=15)
        if first["type"] != "redirect":
            return c, url, first, hops
        assert first["reason"] == "owner"
        assert await c.closed(timeout=10) == 4010
        await c.close(quiet=True)
        url = first["url"]
        hops.append(url)
    raise AssertionError(f"redirected in circles: {hops}")


async def enter(url: str, room: str, identity: str) -> tuple[SignalClient, str, list[str]]:
    """Join `room` through the node at `url`, following redirects."""
    token = auth.issue(SECRET, room=room, identity=identity)
    c, url, first, hops = await follow(url, token, {"type": "join"})
    assert first["type"] == "joined", first
    c.joined = first
    return c, url, hops


async def test_a_room_runs_on_one_node_and_the_others_redirect(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    alice, at_alice, _ = await enter(a.url, "town-hall", "alice")
    bob, at_bob, hops_bob = await enter(b.url, "town-hall", "bob")
    carol, at_carol, _ = await enter(a.url, "town-hall", "carol")
    try:
        assert at_alice == at_bob == at_carol  # all on the owner
        owner, other = (a, b) if at_alice == a.url else (b, a)
        assert owner.hub.rooms.get("town-hall") is not None
        assert other.hub.rooms.get("town-hall") is None
        assert await cluster_of(other).leases.owner("town-hall") == cluster_of(owner).id
        # entering through the other node took exactly one hop, to the owner
        assert hops_bob == ([] if at_bob == b.url else [a.url])
        await bob.send({"type": "chat", "text": "hello from bob"})
        got = await alice.expect("chat", timeout=10)
        assert got["text"] == "hello from bob" and got["from"]["identity"] == "bob"
        await alice.send({"type": "chat", "text": "hi bob"})
        assert (await bob.expect("chat", text="hi bob", timeout=10))["from"]["identity"] == "alice"
    finally:
        for c in (alice, bob, carol):
            await c.close(quiet=True)


async def test_new_rooms_spread_over_nodes(start_hub: StartHub, redis_server: RedisServer) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    clients = []
    try:
        for i in range(8):
            c, _, _ = await enter(a.url, f"room-{i}", f"user-{i}")
            clients.append(c)
        on_a, on_b = len(a.hub.rooms), len(b.hub.rooms)
        assert on_a + on_b == 8
        assert on_a >= 2 and on_b >= 2, (on_a, on_b)  # least-loaded placement spreads them
    finally:
        for c in clients:
            await c.close(quiet=True)


async def test_a_room_whose_node_left_is_placed_again(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    assert await cluster_of(a).claim_here("clinic")
    alice, at, _ = await enter(b.url, "clinic", "alice")
    assert at == a.url
    await alice.send({"type": "chat", "text": "before"})
    await alice.expect("chat", text="before", timeout=10)
    await a.server.close()  # a clean stop gives up its leases at once
    assert await alice.closed(timeout=15) in (1001, 4010)
    await alice.close(quiet=True)
    again, at, _ = await enter(b.url, "clinic", "alice")
    try:
        assert at == b.url
        # the history is the store's: the room goes on where it left off
        assert [m["text"] for m in again.joined["chat"]] == ["before"]  # type: ignore[index]
    finally:
        await again.close(quiet=True)


async def test_a_dead_nodes_rooms_are_taken_over_after_its_heartbeat_expires(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    assert await cluster_of(a).claim_here("desk-call")
    alice, at, _ = await enter(b.url, "desk-call", "alice")
    assert at == a.url
    task = cluster_of(a)._task  # a node that stops beating: as after SIGKILL, seen from Redis
    assert task is not None
    task.cancel()
    await until(lambda: cluster_of(b).registry.get("node-a"), lambda n: n is None)
    bob, at_bob, _ = await enter(b.url, "desk-call", "bob")
    try:
        assert at_bob == b.url
        assert await cluster_of(b).leases.owner("desk-call") == "node-b"
    finally:
        for c in (alice, bob):
            await c.close(quiet=True)


async def test_drain_hands_rooms_over(start_hub: StartHub, redis_server: RedisServer) -> None:
    a = await start_node(start_hub, redis_server, "node-a", drain_timeout=0.5)
    b = await start_node(start_hub, redis_server, "node-b")
    assert await cluster_of(a).claim_here("lobby")
    alice, at, _ = await enter(a.url, "lobby", "alice")
    assert at == a.url
    await a.hub.drain()
    moved = await alice.expect("redirect", timeout=10)
    assert moved == {"type": "redirect", "url": b.url, "reason": "drain"}
    assert await alice.closed(timeout=10) == 4010
    assert await cluster_of(b).leases.owner("lobby") == "node-b"
    # a draining node takes no new room, and sends its old room's comers on
    bob, at_new, _ = await enter(a.url, "fresh-room", "bob")
    again, at_old, _ = await enter(a.url, "lobby", "alice")
    for c in (alice, bob, again):
        await c.close(quiet=True)
    assert at_new == at_old == b.url


async def test_a_lease_taken_elsewhere_moves_the_room(
    start_hub: StartHub, redis_server: RedisServer
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    assert await cluster_of(a).claim_here("market")
    alice, _, _ = await enter(a.url, "market", "alice")
    redis = Redis.from_url(redis_server.url, decode_responses=True)
    try:  # as when Redis came back empty and node b placed the room first
        await redis.set("commhub:lease:market", "node-b", px=10_000)
    finally:
        await redis.aclose()
    moved = await alice.expect("redirect", timeout=10)
    assert moved == {"type": "redirect", "url": b.url, "reason": "moved"}
    assert a.hub.rooms.get("market") is None
    await alice.close(quiet=True)


async def test_redis_restart_rooms_go_on(start_hub: StartHub, redis_server: RedisServer) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    alice, at, _ = await enter(a.url, "ward", "alice")
    bob, _, _ = await enter(at, "ward", "bob")
    owner = a if at == a.url else b
    other = b if owner is a else a
    await redis_server.stop()
    try:
        # the room needs no Redis: chat flows, a newcomer at its node gets in
        await alice.send({"type": "chat", "text": "during"})
        assert (await bob.expect("chat", text="during", timeout=10))["text"] == "during"
        carol, at_carol, _ = await enter(owner.url, "ward", "carol")
        assert at_carol == owner.url
        # a room nobody can place is refused plainly, and the client may retry
        with pytest.raises(Exception) as refused:
            await enter(other.url, "elsewhere", "dave")
        assert getattr(refused.value, "code", None) == "cluster_unavailable"
        assert getattr(refused.value, "status", None) == 503
    finally:
        await redis_server.start()
    # back: the owner re-asserts its lease, the registry fills again, routing works
    await until(lambda: cluster_of(other).leases.owner("ward"), lambda o: o == cluster_of(owner).id)
    dave, at_dave, _ = await enter(other.url, "ward", "dave")
    try:
        assert at_dave == owner.url
        await dave.send({"type": "chat", "text": "after"})
        texts = [m["text"] for m in alice.received("chat")]
        await alice.expect("chat", text="after", timeout=10)
        assert texts.count("during") == 1  # nothing twice
    finally:
        for c in (alice, bob, carol, dave):
            await c.close(quiet=True)


def test_serve_without_redis_exits_with_a_clear_error(tmp_path: Any) -> None:
    port = free_port()
    done = run_cli(
        "serve", "--port", str(free_port()), "--data-dir", str(tmp_path / "d"),
        env=clean_env(COMMHUB_REDIS_URL=f"redis://:pw@127.0.0.1:{port}/0", COMMHUB_SECRET=SECRET),
    )  # fmt: skip
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Redis at redis://:***@127.0.0.1" in done.stderr and "unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert "pw@" not in done.stderr


async def test_the_admin_api_answers_the_same_on_every_node(
    start_hub: StartHub, redis_server: RedisServer, http: aiohttp.ClientSession
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    assert await cluster_of(a).claim_here("on-a")
    assert await cluster_of(b).claim_here("on-b")
    alice, _, _ = await enter(b.url, "on-a", "alice")
    bob, _, _ = await enter(a.url, "on-b", "bob")
    try:
        for node in (a, b):
            status, body = await call(
                http, "GET", f"{node.url}/v1/admin/rooms", headers=admin_headers()
            )
            assert status == 200, body
            listed = {r["name"]: (r["node"], r["participants"]) for r in body["rooms"]}
            assert listed == {"on-a": ("node-a", 1), "on-b": ("node-b", 1)}
        # one room's live state, asked of the node that does not run it
        status, body = await call(
            http, "GET", f"{b.url}/v1/admin/rooms/on-a", headers=admin_headers()
        )
        assert status == 200 and [p["identity"] for p in body["participants"]] == ["alice"]
        # a report filed in a room on a, a ban set through a: both seen from b
        carol, _, _ = await enter(b.url, "on-a", "carol")
        reply = await alice.request(
            {"type": "report", "participant": carol.pid, "reason": "spam"}, timeout=15
        )
        assert reply["type"] == "reported"
        status, _ = await call(
            http, "POST", f"{a.url}/v1/rooms/on-a/bans", json={"identity": "dave"},
            headers=admin_headers(),
        )  # fmt: skip
        assert status == 201
        status, body = await call(http, "GET", f"{b.url}/v1/reports", headers=admin_headers())
        assert status == 200 and [r["id"] for r in body["reports"]] == [reply["report_id"]]
        status, body = await call(http, "GET", f"{b.url}/v1/bans", headers=admin_headers())
        assert status == 200 and [x["identity"] for x in body["bans"]] == ["dave"]
        dave = await SignalClient.connect(b.url, auth.issue(SECRET, room="on-a", identity="dave"))
        await dave.send({"type": "join"})  # sent to a, where the ban holds too
        moved = await dave.expect("redirect", timeout=10)
        await dave.close(quiet=True)
        dave = await SignalClient.connect(
            moved["url"], auth.issue(SECRET, room="on-a", identity="dave")
        )
        await dave.send({"type": "join"})
        assert (await dave.expect("error", timeout=10))["code"] == "banned"
        await dave.close(quiet=True)

        status, _ = await call(
            http, "DELETE", f"{b.url}/v1/admin/rooms/on-a/participants/alice",
            headers=admin_headers(),
        )  # fmt: skip
        assert status == 204
        assert await alice.closed(timeout=10) == 4004
        await carol.close(quiet=True)
    finally:
        for c in (alice, bob):
            await c.close(quiet=True)


async def test_a_desk_and_its_calls_run_on_one_node(
    start_hub: StartHub, redis_server: RedisServer, http: aiohttp.ClientSession
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    await make_desk(a, http, "permits", languages=["ko", "en"])
    clients: list[SignalClient] = []
    try:
        token = agent_token("permits", "agent-kim", ["ko", "en"])
        kim, at_kim, state, _ = await follow(
            b.url, token, {"type": "desk_join", "status": "available"}
        )
        clients.append(kim)
        assert state["type"] == "desk_state", state
        other = a if at_kim == b.url else b
        owner = b if other is a else a
        # the public desk calls, asked of the other node, see the live desk
        status, body = await visit(other, http, "permits", "Ana", "en")
        assert status == 200, body
        ana, at_ana, waiting, hops = await follow(other.url, body["token"], {"type": "desk_join"})
        clients.append(ana)
        assert at_ana == owner.url and hops == [owner.url]
        # an agent is free: the visitor is assigned at once (or after desk_waiting)
        if waiting["type"] != "desk_assigned":
            assert waiting["type"] == "desk_waiting", waiting
            waiting = await ana.expect("desk_assigned", timeout=15)
        assigned = waiting
        # the call room runs where the desk runs, whichever node the visitor asks
        call_token = assigned["token"]
        room_c, at_room, joined, _ = await follow(other.url, call_token, {"type": "join"})
        clients.append(room_c)
        assert joined["type"] == "joined" and at_room == owner.url
        # both nodes list the desk with the live state of the node that runs it
        for node in (a, b):
            status, body = await call(
                http, "GET", f"{node.url}/v1/admin/desks", headers=admin_headers()
            )
            assert status == 200, body
            [desk] = body["desks"]
            assert desk["name"] == "permits" and desk["node"] == cluster_of(owner).id
            assert (desk["agents_online"], desk["sessions"]) == (1, 1), desk
    finally:
        for c in clients:
            await c.close(quiet=True)
