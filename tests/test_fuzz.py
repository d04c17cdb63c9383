"""Property-based fuzzing of the hub's signalling edge against a real hub.

Hypothesis draws every client message type from signalling/schemas/client (refs inlined,
tests/fuzz_schemas.py) plus hostile mutations and raw WebSocket frames
(tests/fuzz_frames.py), sends them from a raw-socket client and checks, for every case:
no `internal_error`; every server message valid against its server schema and valid UTF-8;
the fuzzer closed only for a fair reason; the bystanders in the room still served. After
each run a newcomer joins (its `joined` carries the chat history, so nothing the hub
stored is unencodable), chats, and everyone receives it.

Runs are derandomized (the same cases every run) and find-all: the failure lists every
distinct fault with the shortest input that caused it. COMMHUB_FUZZ_SCALE=10 hunts longer.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from hypothesis import strategies as st

from commhub.rtc.ice import IcePolicy, policy_scope
from tests.conftest import StartHub
from tests.fuzz_frames import frame_op, play
from tests.fuzz_harness import OPEN_LIMITS, Arena, unencodable
from tests.fuzz_media import PEER, SELF, media_message
from tests.fuzz_schemas import (
    CLIENT_TYPES,
    ODD,
    hostile_frame_text,
    hostile_text,
    json_value,
    mutated,
    raw_json,
    to_json,
    valid_message,
)
from tests.fuzz_wire import RawClient
from tests.helpers.media import LOOPBACK


@pytest.fixture
async def arena(start_hub: StartHub) -> Any:
    hub = await start_hub(**OPEN_LIMITS)
    a = Arena(hub)
    await a.add_watcher("watcher")
    await a.new_fuzzer()
    yield a
    await a.close()


@st.composite
def join_frame(draw: st.DrawFn) -> str:
    msg = draw(valid_message("join"))
    if draw(st.booleans()):
        msg = draw(mutated(msg))
    return to_json(msg, draw(st.booleans()))


# One example: sometimes a fresh connection (frames before its join, then a drawn join),
# then a batch of hostile text frames.
message_batches = st.tuples(
    st.one_of(
        st.none(),
        st.none(),
        st.none(),
        st.tuples(st.lists(hostile_frame_text(), max_size=2), join_frame()),
    ),
    st.lists(hostile_frame_text(), min_size=4, max_size=16),
)


async def test_fuzz_messages(arena: Arena) -> None:
    """Schema-drawn messages of every type, mutated ones and malformed JSON."""

    async def body(example: tuple[Any, list[str]]) -> int:
        fresh, frames = example
        sent = 0
        if fresh is not None:
            before, join = fresh
            await arena.new_fuzzer(join=join, before=before)
            sent += len(before) + 1
        for text in frames:
            f = await arena.ready()
            sent += await f.send_text(text)
        await arena.settle()
        return sent

    await arena.run(message_batches, body, 900)
    await arena.verdict(minimum_cases=6000)


async def test_every_client_type_is_generated() -> None:
    """The generator reaches every message type the schemas define, valid as drawn."""
    from hypothesis import given, settings

    from commhub.protocol import schemas

    seen: set[str] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(st.sampled_from(CLIENT_TYPES).flatmap(valid_message))
    def check(msg: dict[str, Any]) -> None:
        assert schemas().parse_client(to_json(msg, False))["type"] == msg["type"]
        seen.add(msg["type"])

    check()
    assert seen == set(CLIENT_TYPES)


async def test_fuzz_frames(arena: Arena) -> None:
    """Raw WebSocket frames: binary, fragmented, unmasked, reserved, oversized..."""

    async def body(ops: list[Any]) -> int:
        f = await arena.ready()
        sent = await play(f, ops)
        await arena.settle()
        return sent

    await arena.run(st.lists(frame_op(), min_size=1, max_size=6), body, 500)
    await arena.verdict(minimum_cases=1200)


async def test_fuzz_default_limits(start_hub: StartHub) -> None:
    """With the default limits the same storm ends in rate limiting and flooding closes,
    never in an internal error, and the bystander is unaffected."""
    hub = await start_hub(captions=False, max_connections_per_identity=1000, join_burst=10**4)
    arena = Arena(hub)
    await arena.add_watcher("watcher")
    await arena.new_fuzzer()

    async def body(ops: list[Any]) -> int:
        f = await arena.ready()
        sent = await play(f, ops)
        await arena.settle()
        return sent

    try:
        await arena.run(st.lists(frame_op(), min_size=5, max_size=40), body, 60)
        # flooding closes cut storms short, by how fast this machine sends: a floor, not a count
        await arena.verdict(minimum_cases=300)
    finally:
        await arena.close()


async def real_offer() -> str:
    """An offer from a real aiortc peer publishing audio and video (loopback candidates)."""
    pc = RTCPeerConnection()
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
    with policy_scope(IcePolicy(hosts=LOOPBACK)):
        await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


@pytest.mark.e2e
async def test_fuzz_media(start_hub: StartHub) -> None:
    """Hostile SDP (offer/answer, to the hub and relayed to a p2p peer), ICE candidates and
    track metadata: precise media error codes, never internal_error, the peer unharmed."""
    hub = await start_hub(**OPEN_LIMITS, room_mode="p2p", media_stall_timeout=60.0)
    arena = Arena(hub, room="media")
    peer = await arena.add_watcher("peer")
    await arena.new_fuzzer()
    seed = await real_offer()
    peer_id = peer.inbox[0]["participant"]["id"]

    async def body(msgs: list[dict[str, Any]]) -> int:
        sent = 0
        for msg in msgs:
            f = await arena.ready()
            me = f.inbox[next(i for i, m in enumerate(f.inbox) if m["type"] == "joined")]
            if "to" in msg:
                msg = {**msg, "to": {PEER: peer_id, SELF: me["participant"]["id"]}.get(
                    msg["to"], msg["to"])}  # fmt: skip
            sent += await f.send_text(to_json(msg, False))
        await arena.settle()
        return sent

    try:
        await arena.run(st.lists(media_message(seed), min_size=1, max_size=4), body, 300)
        await arena.verdict(minimum_cases=600)
    finally:
        await arena.close()


@st.composite
def chat_text(draw: st.DrawFn) -> str:
    """Chat text for the translation path: words, odd characters, sizes around the
    translation limit (2000) and the chat limit (4000); never a lone surrogate (refused at
    the edge before it could reach an engine)."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(["word", "house", "the", "Good morning", "where is", "?", "\n"]),
                st.sampled_from([c for c in ODD if not 0xD800 <= ord(c) <= 0xDFFF]),
                st.sampled_from(["^", "$", "[", "]", "\\", "/", "@", "<", ">", "{", "}", "*"]),
                st.text(max_size=5),
            ),
            max_size=40,
        )
    )
    text = " ".join(parts)
    if draw(st.integers(0, 5)) == 0:
        text += " word" * draw(st.sampled_from([300, 399, 400, 790]))
    return text


@pytest.mark.e2e
async def test_fuzz_translation(start_hub: StartHub) -> None:
    """Hostile chat text through a room with a Spanish reader (real Apertium en->es), and
    a control sentence in another room after each: every reader gets its own message's
    translation (a unique number travels through Apertium untouched)."""
    hub = await start_hub(**OPEN_LIMITS)
    arena = Arena(hub, room="tr")
    spanish = await arena.add_watcher("lector", speak="es", read="es")
    control = Arena(hub, room="control")
    control.trouble = arena.trouble
    control_es = await control.add_watcher("control-es", speak="es", read="es")
    control_en = await control.add_watcher("control-en", speak="en", read="en")
    await arena.new_fuzzer()
    serial = iter(range(100_000, 10**6))

    async def body(texts: list[str]) -> int:
        sent = 0
        for text in texts:
            f = await arena.ready()
            n = next(serial)
            start_es, start_ctl = len(spanish.inbox), len(control_es.inbox)
            mine = f"{text} {n}"[:4000] if len(text) < 3990 else f"{n} {text}"[:4000]
            if not mine.strip():
                continue
            sent += await f.send({"type": "chat", "text": mine})
            sent += await control_en.send({"type": "chat", "text": f"Good morning {n}"})
            got = await spanish.expect("chat", start=start_es)
            ctl = await control_es.expect("chat", start=start_ctl)
            check_translation(arena, got, str(n), mine.strip())
            check_translation(arena, ctl, str(n), f"Good morning {n}")
            if ctl.get("translation", {}).get("status") != "ok":
                arena.trouble.add(f"control: untranslated: {ctl.get('translation')}")
        await arena.settle()
        return sent

    try:
        await arena.run(st.lists(chat_text(), min_size=1, max_size=3), body, 120)
        await arena.verdict(minimum_cases=300)
    finally:
        await control.close()
        await arena.close()


def check_translation(arena: Arena, msg: dict[str, Any], marker: str, text: str) -> None:
    """The reader got this text, and a translation that is this text's own."""
    t = msg.get("translation", {})
    if msg.get("text") != text:
        arena.trouble.add(f"translation: wrong message: wanted {text[:80]!r}, got {msg!r:.300}")
    elif t.get("status") == "ok" and marker not in t.get("text", ""):
        arena.trouble.add(
            f"translation: not its own: {text[:80]!r} came back as {t.get('text', '')[:200]!r}"
        )


@st.composite
def admin_request(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(auth, method, path, body) for the admin API, hostile in every part."""
    auth_kind = draw(st.sampled_from(["none", "garbage", "user", "room_admin", "admin", "admin"]))
    # Not "..": the client normalises it away (the request would reach another route).
    room = draw(
        st.one_of(st.just("lobby"), st.sampled_from(["a" * 129, "%ED%A0%80", "%00", "x%2F"]))
    )
    route = draw(
        st.sampled_from(
            ["tokens", "tokens", "tokens", "media", "room", "participant", "invite", "invite",
             "invite_list", "invite_revoke", "invite_show", "invite_redeem", "invite_redeem"]
        )
    )  # fmt: skip
    code = draw(st.sampled_from([CODE, CODE, "x", "A" * 16, "A" * 65, "%ED%A0%80", "..%2F"]))
    method, path = {
        "invite": ("POST", "/v1/admin/invites"),
        "invite_list": ("GET", f"/v1/admin/invites?room={room}"),
        "invite_revoke": ("DELETE", f"/v1/admin/invites/{code}"),
        "invite_show": ("GET", f"/v1/invites/{code}"),
        "invite_redeem": ("POST", f"/v1/invites/{code}/redeem"),
        "tokens": ("POST", "/v1/admin/tokens"),
        "media": ("PUT", f"/v1/admin/rooms/{room}/media"),
        # Closing the bystanders' own room would end them fairly: close another one.
        "room": draw(st.sampled_from([("GET", f"/v1/admin/rooms/{room}"), ("DELETE", GONE)])),
        "participant": ("DELETE", f"/v1/admin/rooms/{room}/participants/{draw(WHO)}"),
    }[route]  # fmt: skip
    if route == "tokens" and draw(st.integers(0, 2)):
        spec: dict[str, Any] = {"room": "lobby", "identity": "guest"}
        for key in draw(st.sets(st.sampled_from(TOKEN_FIELDS), max_size=4)):
            spec[key] = draw(st.one_of(st.sampled_from(TOKEN_VALUES[key]), json_value))
        if draw(st.integers(0, 5)) == 0:
            spec[draw(hostile_text(min_size=1, max_size=8))] = draw(json_value)
        body = to_json(spec, draw(st.booleans()))
    elif route == "invite" and draw(st.integers(0, 2)):
        spec = {"room": "lobby"}
        for key in draw(st.sets(st.sampled_from(list(INVITE_VALUES)), max_size=3)):
            spec[key] = draw(st.one_of(st.sampled_from(INVITE_VALUES[key]), json_value))
        body = to_json(spec, draw(st.booleans()))
    elif route == "invite_redeem" and draw(st.integers(0, 2)):
        guest: dict[str, Any] = {"name": draw(st.one_of(st.just("Guest"), hostile_text(0, 90)))}
        for key in draw(st.sets(st.sampled_from(["speak", "read", "x"]), max_size=2)):
            guest[key] = draw(st.one_of(st.sampled_from(TOKEN_VALUES["speak"]), json_value))
        body = to_json(guest, draw(st.booleans()))
    elif route == "media" and draw(st.booleans()):
        body = to_json(
            {"mode": draw(st.one_of(st.sampled_from(["sfu", "p2p", "auto"]), json_value))}, True
        )
    else:
        body = draw(st.one_of(raw_json(), json_value.map(lambda v: to_json(v, True))))
    return auth_kind, method, path, body


GONE = "/v1/admin/rooms/gone"
CODE = "@code"  # the newest invite code the fuzz created
PUBLIC = ("/v1/invites/",)  # no token needed
INVITE_VALUES: dict[str, list[Any]] = {
    "room": ["lobby", "*", "a" * 129],
    "ttl": [0, -1, 1e308, True, 60],
    "uses": [0, 1, -1, 2**70, True, None, 1.5],
    "role": ["admin", "guest", "agent", ["guest"]],
    "grants": [["admin"], ["chat"], [], "chat", [1]],
    "media_mode": ["p2p", "sfu", "x", None],
}
WHO = st.sampled_from(["x", "PA_nobody123", "%ED%A0%80"])
TOKEN_FIELDS = ["room", "identity", "name", "role", "grants", "speak", "read", "ttl", "media_mode"]
TOKEN_VALUES: dict[str, list[Any]] = {
    "room": ["lobby", "other", "*", "", "a" * 129, "é"],
    "identity": ["", "a" * 128, "a" * 129, "\ud800", "bob\x00", "\uffff"],
    "name": ["", "Eve \ud800", "a" * 80, "a" * 81, "\u202eevil", "\uffff"],
    "role": ["admin", "bot", "king", ["admin"]],
    "grants": [["admin"], ["chat", "chat"], "chat", [["x"]], {"a": 1}, []],
    "speak": ["es", "zz-ZZZZ", "", ["en"]],
    "read": ["es", "ko", "x", None],
    "ttl": [0, -1, 1e-9, 1e308, 10**30, True, "60", 7 * 86400, 7 * 86400 + 1],
    "media_mode": ["sfu", "p2p", "auto", "mesh", None, ["sfu"]],
}


async def test_fuzz_admin_api(start_hub: StartHub) -> None:
    """Hostile requests to the admin API and the invite links: never a 5xx, every refusal
    {error, message} JSON, authorization before the body; a token it mints (or an invite
    redeems) joins a room without harming it."""
    hub = await start_hub(**OPEN_LIMITS)
    arena = Arena(hub, room="lobby")
    await arena.add_watcher("watcher")
    tokens = {
        "none": None,
        "garbage": "not.a.token",
        "user": hub.token("lobby", "user"),
        "room_admin": hub.token("lobby", "ra", grants=["admin"]),
        "admin": hub.token("*", "ops", grants=["admin"]),
    }
    statuses: Counter[int] = Counter()
    codes: list[str] = []

    async def body(example: tuple[str, str, str, str]) -> int:
        auth_kind, method, path, data = example
        path = path.replace(CODE, codes[-1] if codes else "A" * 20)
        public = path.startswith(PUBLIC)
        token = tokens[auth_kind]
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with http.request(
            method, hub.url + path, data=data.encode("utf-8", "surrogatepass"), headers=headers
        ) as r:
            text = await r.text()
        statuses[r.status] += 1
        shown = f"{method} {path} as {auth_kind}: HTTP {r.status} {text[:200]!r}"
        if r.status >= 500:
            arena.trouble.add(f"admin: server error {r.status}: {shown}")
        if r.status >= 400 and r.status != 413:  # 413: see fuzz_corpus/08
            try:
                refusal = json.loads(text)
            except ValueError:
                refusal = None
            if not (isinstance(refusal, dict) and {"error", "message"} <= set(refusal)):
                arena.trouble.add(f"admin: refusal not JSON {r.status}: {shown}")
        if r.status == 201 and path == "/v1/admin/invites":
            codes.append(json.loads(text)["code"])
        if public and r.status not in (200, 400, 404, 409, 410, 429):
            arena.trouble.add(f"admin: invite answered {r.status}: {shown}")
        if not public and auth_kind in ("none", "garbage") and r.status != 401:
            arena.trouble.add(f"admin: unauthenticated got {r.status}: {shown}")
        if not public and auth_kind == "user" and r.status not in (401, 403):
            arena.trouble.add(f"admin: non-admin got {r.status}: {shown}")
        minted_here = r.status == 201 and path == "/v1/admin/tokens"
        redeemed = r.status == 200 and path.endswith("/redeem")
        if minted_here or redeemed:  # the token works, and nothing it carries breaks a room
            minted = json.loads(text)["token"]
            room = json.loads(text if redeemed else data)["room"]
            try:
                c = await RawClient.connect(arena.port, minted, arena.trouble, "minted")
            except ConnectionError as exc:
                if " 101 " in str(exc) or not str(exc).startswith("HTTP/1.1 4"):
                    arena.trouble.add(f"admin: minted token refused oddly: {str(exc)[:200]}")
            else:
                if room != "*":  # (its grants may not include chat: a ping, then)
                    await c.join()
                    assert await c.sync(), "the minted token's connection was closed"
                await c.close()
            await arena.settle()
        return 1

    async with aiohttp.ClientSession() as http:
        try:
            await arena.run(admin_request(), body, 500)
            print(f"[fuzz] admin statuses {dict(statuses)}")
            await arena.verdict(minimum_cases=500)
        finally:
            await arena.close()


@st.composite
def swarm_action(draw: st.DrawFn) -> tuple[int, str]:
    actor = draw(st.integers(0, 3))
    what = draw(st.integers(0, 9))
    if what == 0:
        return actor, "@reconnect"
    if what == 1:
        return actor, "@abort"  # the socket drops without a close frame
    if what == 2:
        return actor, '{"type":"leave"}'
    if what == 3:  # an administrator removes this actor, or sets the room's media mode
        return actor, draw(st.sampled_from(["@remove", "@mode sfu", "@mode p2p", "@mode auto"]))
    return actor, draw(hostile_frame_text())


async def test_fuzz_swarm(arena: Arena) -> None:
    """Four connections at once, two of them the same identity (each join replaces the
    other), sending, leaving, dropping and reconnecting concurrently: no internal error, no
    ghost participant, the bystander unharmed."""
    arena.fair_closes |= {4002, 4004}  # replaced (the twin joined again), removed (admin)
    await arena.drop_fuzzer()
    names = ["twin", "twin", "solo1", "solo2"]
    actors: list[RawClient | None] = [None] * 4
    admin = {"Authorization": "Bearer " + arena.hub.token("*", "ops", grants=["admin"])}
    rooms = f"{arena.hub.url}/v1/admin/rooms/{arena.room}"

    async def act(i: int, steps: list[str]) -> int:
        sent = 0
        for step in steps:
            if step == "@remove":
                async with http.delete(f"{rooms}/participants/{names[i]}", headers=admin) as r:
                    sent += r.status in (204, 404)
                continue
            if step.startswith("@mode"):
                body = {"mode": step.split()[1]}
                async with http.put(f"{rooms}/media", json=body, headers=admin) as r:
                    sent += r.status == 200
                continue
            c = actors[i]
            if c is not None and c.gone:
                arena.closed(c)
                c = None
            if step == "@reconnect" or c is None:
                if c is not None:
                    await c.close()
                    arena.clients.remove(c)
                c = actors[i] = await arena.connect(names[i])
                await c.send({"type": "join"})
                sent += 1
                if step == "@reconnect":
                    continue
            if step == "@abort":
                c.writer.transport.abort()
                await c.eof.wait()
                arena.clients.remove(c)
                actors[i] = None
                continue
            sent += await c.send_text(step)
        return sent

    async def body(actions: list[tuple[int, str]]) -> int:
        per: dict[int, list[str]] = {}
        for i, step in actions:
            per.setdefault(i, []).append(step)
        sent = sum(await asyncio.gather(*(act(i, steps) for i, steps in per.items())))
        for c in actors:  # everything handled before the next example
            if c is not None and not c.gone and not await c.sync():
                arena.closed(c)
        await arena.settle()
        return sent

    async with aiohttp.ClientSession() as http:
        await arena.run(st.lists(swarm_action(), min_size=2, max_size=12), body, 150)
    await arena.verdict(minimum_cases=700)


def test_unencodable_state_is_found() -> None:
    """The after-run check sees a lone surrogate however deep the hub keeps it."""

    class Keeper:
        def __init__(self) -> None:
            self.history = [{"text": "fine"}, {"text": ("ok", "bad \ud800")}]

    assert unencodable(Keeper()) == ["'bad \\ud800'"]
    assert unencodable({"text": "a valid pair \U0001f600 \uffff"}) == []
