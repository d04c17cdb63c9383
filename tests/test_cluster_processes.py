"""Several `commhub serve` processes on one real redis-server and one PostgreSQL: rooms meet on
their owner (every node's admin API lists the same rooms, reports and desks), drain and SIGKILL
hand them over with their history, a Redis restart (even one that forgets every lease) loses
and duplicates no chat, and a node that cannot reach Redis at start says so and exits.

The participants are written from signalling/PROTOCOL.md ("Several nodes"), not the SDK: they
follow `redirect` at once and reconnect through their entry URL after any other drop
(tests/helpers/cluster.py `Member`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from commhub.sdk.signal import Refused
from tests.helpers.cluster import Cluster, Member, Node
from tests.helpers.http import call
from tests.helpers.hubproc import clean_env, free_port
from tests.helpers.services import RedisServer
from tests.helpers.wait import wait_for
from tests.wsclient import SignalClient

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not RedisServer.available(), reason="redis-server is not installed"),
]

MakeCluster = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def make_cluster(tmp_path: Path, postgres_url: str) -> AsyncIterator[MakeCluster]:
    """Clusters whose nodes share one PostgreSQL database (the deployment README describes):
    a room that moves keeps its history."""
    made: list[Cluster] = []

    async def make(nodes: int = 3, **kw: Any) -> Cluster:
        kw.setdefault("database_url", postgres_url)
        cluster = Cluster(tmp_path / f"cluster{len(made)}", nodes, **kw)
        made.append(cluster)
        await cluster.start()
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


@pytest.fixture
async def members() -> AsyncIterator[list[Member]]:
    made: list[Member] = []
    yield made
    for m in made:
        await m.close()


def member(cluster: Cluster, made: list[Member], entry: int, room: str, identity: str) -> Member:
    """A participant whose entry is node `entry`; the other nodes stand behind it as a load
    balancer would (tried when the entry refuses connections)."""
    urls = [cluster.nodes[(entry + k) % len(cluster.nodes)].url for k in range(len(cluster.nodes))]
    m = Member(urls, cluster.token(room, identity), identity)
    made.append(m)
    return m


async def owner_node(cluster: Cluster, room: str) -> Node:
    owner = await cluster.owner(room)
    assert owner is not None, f"no lease for {room!r} in Redis\n{cluster.logs()}"
    return next(n for n in cluster.nodes if n.node_id == owner)


def chat_ids(m: Member) -> Counter[str]:
    return Counter(str(c["id"]) for c in m.chats())


def rejoined(m: Member, joins: int) -> Callable[[], bool]:
    return lambda: len(m.joins) > joins


def got_all(m: Member, ids: set[str]) -> Callable[[], bool]:
    return lambda: set(chat_ids(m)) >= ids


async def test_participants_entering_through_different_nodes_meet_on_the_owner(
    make_cluster: MakeCluster, members: list[Member], http: aiohttp.ClientSession
) -> None:
    cluster = await make_cluster(3)
    a = member(cluster, members, 0, "town", "alice")
    b = member(cluster, members, 1, "town", "bob")
    c = member(cluster, members, 2, "town", "carol")
    for m in (a, b, c):
        await m.enter()
    owner = await owner_node(cluster, "town")
    assert {m.node_url for m in (a, b, c)} == {owner.url}, cluster.logs()
    # three different entries, one owner: the two others were sent there, each at once
    redirects = [r for m in (a, b, c) for r in m.redirects]
    assert len(redirects) == 2
    assert all(r == {"type": "redirect", "url": owner.url, "reason": "owner"} for r in redirects)
    for m in (a, b, c):  # a redirect is one hop: no member went round the nodes
        assert len(m.redirects) <= 1 and len(m.joins) == 1
    assert c.channel is not None and c.channel.joined is not None
    assert {p["identity"] for p in c.channel.joined["participants"]} >= {"alice", "bob"}

    sent_a = await a.chat("hello from alice")
    sent_b = await b.chat("hello from bob")
    await wait_for(lambda: chat_ids(b)[sent_a["id"]] == 1, 30, "alice's chat at bob")
    await wait_for(lambda: chat_ids(a)[sent_b["id"]] == 1, 30, "bob's chat at alice")
    await wait_for(lambda: chat_ids(c)[sent_a["id"]] == chat_ids(c)[sent_b["id"]] == 1, 30)

    # a report filed on the owner, a desk created through another node
    assert b.channel is not None
    report = await b.channel.request(
        {"type": "report", "participant": a.pid, "message_id": sent_a["id"], "reason": "spam"}
    )
    assert report["type"] == "reported"
    maker = next(n for n in cluster.nodes if n is not owner)
    status, made = await call(
        http, "POST", f"{maker.url}/v1/admin/desks", headers=cluster.admin_headers(),
        json={"name": "tax", "languages": ["ko", "en"]},
    )  # fmt: skip
    assert status == 201, made

    # the admin API of every node lists the same room (three participants), report and desk
    admin = cluster.admin_headers()
    for node in cluster.nodes:
        status, body = await call(http, "GET", f"{node.url}/v1/admin/rooms", headers=admin)
        assert status == 200, body
        rooms = {r["name"]: r for r in body["rooms"]}
        assert "town" in rooms, f"{node.node_id} (owner {owner.node_id}) lists {body}"
        assert rooms["town"]["participants"] == 3, (node.node_id, body)
        status, body = await call(http, "GET", f"{node.url}/v1/reports?room=town", headers=admin)
        assert status == 200, body
        assert [r["id"] for r in body["reports"]] == [report["report_id"]], (node.node_id, body)
        status, body = await call(http, "GET", f"{node.url}/v1/admin/desks", headers=admin)
        assert status == 200, body
        assert [d["name"] for d in body["desks"]] == ["tax"], (node.node_id, body)


async def test_drain_hands_rooms_over_with_their_history(
    make_cluster: MakeCluster, members: list[Member]
) -> None:
    cluster = await make_cluster(3, drain_timeout=2.0)
    a = member(cluster, members, 0, "hall", "alice")
    b = member(cluster, members, 1, "hall", "bob")
    for m in (a, b):
        await m.enter()
        m.keep_connected()
    before = [(await a.chat(f"before drain {k}"))["id"] for k in range(3)]
    old = await owner_node(cluster, "hall")
    joins = {m.name: len(m.joins) for m in (a, b)}

    code = await cluster.stop_node(old, signal.SIGTERM, timeout=60)
    assert code == 0, old.proc.log()[-3000:]
    assert "Traceback" not in old.proc.log()
    for m in (a, b):
        await wait_for(rejoined(m, joins[m.name]), 60, f"{m.name} rejoined")
    new = await owner_node(cluster, "hall")
    assert new.node_id != old.node_id and new.alive
    for m in (a, b):
        drains = [r for r in m.redirects if r["reason"] == "drain"]
        assert drains and drains[-1]["url"] == new.url, (m.name, m.redirects)
        assert m.joins[-1] == new.url
        # the history the new owner gives comes from the shared store: nothing lost
        assert [c["id"] for c in m.history()][-3:] == before, m.history()
    after = await b.chat("after drain")
    await wait_for(lambda: chat_ids(a)[after["id"]] == 1, 30, "chat after the drain")
    assert all(n == 1 for n in chat_ids(a).values())


async def test_sigkill_of_the_owner_moves_the_room_with_its_history(
    make_cluster: MakeCluster, members: list[Member]
) -> None:
    cluster = await make_cluster(3, lease_ttl=3.0)
    a = member(cluster, members, 0, "call", "alice")
    b = member(cluster, members, 1, "call", "bob")
    for m in (a, b):
        await m.enter()
        m.keep_connected()
    before = [(await b.chat(f"before the kill {k}"))["id"] for k in range(3)]
    old = await owner_node(cluster, "call")
    joins = {m.name: len(m.joins) for m in (a, b)}

    killed_at = time.monotonic()
    assert await cluster.stop_node(old, signal.SIGKILL) == -signal.SIGKILL
    for m in (a, b):
        await wait_for(rejoined(m, joins[m.name]), 90, f"{m.name} rejoined")
    took = time.monotonic() - killed_at
    new = await owner_node(cluster, "call")
    assert new.node_id != old.node_id and new.alive, cluster.logs()
    assert a.joins[-1] == b.joins[-1] == new.url, (a.joins, b.joins, took)
    for m in (a, b):
        assert [c["id"] for c in m.history()][-3:] == before, m.history()
    after = await a.chat("after the kill")
    await wait_for(lambda: chat_ids(b)[after["id"]] == 1, 30, "chat after the kill")


async def test_redis_restart_loses_and_duplicates_no_chat(
    make_cluster: MakeCluster, members: list[Member]
) -> None:
    cluster = await make_cluster(2, lease_ttl=3.0)
    assert cluster.redis is not None
    a = member(cluster, members, 0, "plaza", "alice")
    b = member(cluster, members, 1, "plaza", "bob")
    for m in (a, b):
        await m.enter()
        m.keep_connected()
    owner = await owner_node(cluster, "plaza")
    other = next(n for n in cluster.nodes if n is not owner)
    sent: list[str] = []

    async def talk(n: int, tag: str) -> None:
        for k in range(n):
            for who in (a, b):
                sent.append((await who.chat(f"{tag} {who.name} {k}"))["id"])
            await asyncio.sleep(0.25)

    await talk(2, "before")
    await cluster.redis.stop()
    # down for two lease TTLs: every node's heartbeat fails meanwhile; the room runs on its
    # owner, which needs no Redis for it, and chat goes on
    await talk(12, "redis down")
    # a node that does not hold the room cannot say where it runs: 503, try again later
    with pytest.raises(Refused) as refused:
        await SignalClient.connect(other.url, cluster.token("plaza", "carol"))
    assert (refused.value.code, refused.value.status) == ("cluster_unavailable", 503)
    await cluster.redis.start()
    # the owner takes its lease again (nobody asked for the room meanwhile)
    deadline = time.monotonic() + 60
    while await cluster.owner("plaza") is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert await cluster.owner("plaza") == owner.node_id, cluster.logs()
    await talk(2, "after")
    late = member(cluster, members, 1, "plaza", "carol")
    await late.enter()
    assert late.joins == [owner.url]
    # nobody was disconnected: the room went on where it was
    assert a.joins == b.joins == [owner.url], (a.joins, b.joins)

    assert len(sent) == len(set(sent)) == 32
    for m in (a, b):
        await wait_for(got_all(m, set(sent)), 30, f"every chat at {m.name}")
        assert all(n == 1 for n in chat_ids(m).values()), (m.name, chat_ids(m))
    history = [c["id"] for c in late.history()]  # from the store: each once, none lost
    assert history == sent, (history, sent)


async def test_a_room_placed_twice_after_redis_forgot_it_comes_together_again(
    make_cluster: MakeCluster, members: list[Member]
) -> None:
    # Redis comes back empty (no persistence): leases and registry gone. With a long lease
    # TTL the owner re-asserts only at its next heartbeat (up to 10 s), so a newcomer at the
    # other node gets the room placed there meanwhile: two copies of one room, until the
    # owner finds its lease taken. Whatever way that resolves (redirect `moved`, or told to
    # come back when the taker has not re-registered yet), everyone ends in one room, with
    # its history, and no chat is lost or delivered twice.
    cluster = await make_cluster(2, lease_ttl=30.0)
    assert cluster.redis is not None
    a = member(cluster, members, 0, "forum", "alice")
    b = member(cluster, members, 1, "forum", "bob")
    for m in (a, b):
        await m.enter()
        m.keep_connected()
    owner = await owner_node(cluster, "forum")
    other = next(n for n in cluster.nodes if n is not owner)
    before = [(await m.chat(f"before {m.name}"))["id"] for m in (a, b)]

    for _ in range(3):  # the owner's heartbeat may land first (a few ms in 10 s): again
        await cluster.redis.restart()
        carol = member(cluster, members, other.index, "forum", "carol")
        await carol.enter()
        if carol.joins == [other.url]:
            break
        await carol.close()
    assert carol.joins == [other.url], cluster.logs()  # the room runs on both nodes now
    carol.keep_connected()
    everyone = (a, b, carol)

    async def together() -> str | None:
        """The node everyone is joined at, if it is one and holds the lease."""
        if not all(m.channel is not None and not m.channel.ws.closed for m in everyone):
            return None  # someone is between two sockets
        holder = await cluster.owner("forum")
        node = next((n for n in cluster.nodes if n.node_id == holder), None)
        if node is None or {m.node_url for m in everyone} != {node.url}:
            return None
        return node.url

    deadline = time.monotonic() + 90
    while (where := await together()) is None:
        assert time.monotonic() < deadline, ([m.joins for m in everyone], cluster.logs())
        await asyncio.sleep(0.2)
    # one of the two copies was given up: its members joined again (the room may bounce
    # once or twice while the nodes re-register)
    assert len(a.joins) + len(b.joins) + len(carol.joins) > 3
    for m in everyone:
        assert m.node_url == where
        assert [c["id"] for c in m.history()] == before, (m.name, m.history())
    after = [(await m.chat(f"after {m.name}"))["id"] for m in everyone]
    for m in everyone:
        await wait_for(got_all(m, set(after)), 30, f"every chat at {m.name}")
        assert all(n == 1 for n in chat_ids(m).values()), (m.name, chat_ids(m))


def test_serve_without_redis_exits_with_a_clear_error(tmp_path: Path) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    env = clean_env(
        COMMHUB_REDIS_URL=nowhere, COMMHUB_SECRET="s" * 40, COMMHUB_CAPTION_PRELOAD="[]"
    )
    port = str(free_port())  # a node needs a known address (its URL in the registry)
    done = subprocess.run(
        [sys.executable, "-m", "commhub.cli", "serve", "--port", port, "--data-dir", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd(),
    )  # fmt: skip
    assert done.returncode not in (0, None), (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert "Unclosed" not in done.stderr, done.stderr  # it cleans up what it opened
    assert "listening" not in done.stdout
    assert "redis" in done.stderr.lower() and "127.0.0.1" in done.stderr, done.stderr
