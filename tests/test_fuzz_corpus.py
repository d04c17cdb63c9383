"""Replays the fuzz corpus (tests/fuzz_corpus/*.json): every case an attacker or the
fuzzer found, against a fresh real hub, every run.

A case is data: the hub's settings and a list of steps by named actors (raw-socket
clients), e.g.

    {"about": "...", "limits": "open",
     "steps": [{"connect": "a", "identity": "alice", "speak": "en", "read": "en"},
               {"join": "a"},
               {"send": "a", "raw": "{\\"type\\":\\"chat\\",\\"text\\":\\"hi \\\\ud800\\"}"},
               {"expect": "a", "type": "error", "match": {"code": "invalid_message"}}]}

`raw` is the exact text of one frame: a string, or a list of pieces concatenated where a
piece [text, n] is text repeated n times with "{i}" replaced by the repetition's index.
Besides what each step asserts, every case holds the fuzz properties: no internal_error,
every server message valid against its schema, and at the end the room is usable by a
newcomer (who gets `joined` with the chat history).
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from commhub import auth
from tests.conftest import SECRET, Running, StartHub
from tests.fuzz_frames import encode
from tests.fuzz_harness import OPEN_LIMITS, Arena
from tests.fuzz_wire import FAILURES, RawClient

CORPUS = Path(__file__).parent / "fuzz_corpus"
CASES = sorted(CORPUS.glob("*.json"))


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return case


def _param(path: Path) -> Any:
    slow = load_case(path).get("e2e", False)  # real Apertium or aiortc sessions
    return pytest.param(path, id=path.stem, marks=[pytest.mark.e2e] if slow else [])


def build(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    out = []
    for piece in raw:
        if isinstance(piece, str):
            out.append(piece)
        else:
            text, n = piece
            out.extend(text.replace("{i}", str(i)) for i in range(n))
    return "".join(out)


def lookup(msg: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(msg, dict) or key not in msg:
            return _ABSENT
        msg = msg[key]
    return msg


_ABSENT = object()


def matches(value: Any, want: Any) -> bool:
    if isinstance(want, dict) and len(want) == 1:
        ((op, arg),) = want.items()
        if op == "in":
            return bool(value in arg)
        if op == "absent":
            return bool((value is _ABSENT) == arg)
        if op == "contains":
            return isinstance(value, str) and bool(arg in value)
        if op == "not_contains":
            return not (isinstance(value, str) and arg in value)
        if op == "max_len":
            return value is _ABSENT or bool(len(value) <= arg)
    return bool(value == want)


class Replay:
    def __init__(self, hub: Running, arena: Arena) -> None:
        self.hub = hub
        self.arena = arena
        self.actors: dict[str, RawClient] = {}
        self.marks: dict[str, int] = {}
        self.tokens: dict[str, str] = {}
        self.rooms: set[str] = set()

    async def step(self, s: dict[str, Any]) -> None:
        if "connect" in s:
            name = s["connect"]
            claims = {k: s[k] for k in ("speak", "read", "name", "grants", "media_mode") if k in s}
            room = s.get("room", "lobby")
            self.rooms.add(room)
            token = self.tokens.get(s.get("token", "")) or self.hub.token(
                room, s.get("identity", name), **claims
            )
            c = await RawClient.connect(self.arena.port, token, self.arena.trouble, name)
            self.arena.clients.append(c)
            self.actors[name], self.marks[name] = c, 0
        elif "join" in s:
            c = self.actors[s["join"]]
            await c.join(**s.get("fields", {}))
        elif "send" in s:
            c = self.actors[s["send"]]
            self.marks[s["send"]] = len(c.inbox)
            text = build(s["raw"])
            for i in range(s.get("repeat", 1)):
                if not await c.send_text(text.replace("{n}", str(i))):
                    break
        elif "frames" in s:
            c = self.actors[s["frames"]]
            self.marks[s["frames"]] = len(c.inbox)
            for _ in range(s.get("repeat", 1)):
                for data in encode(tuple(s["op"])):
                    if isinstance(data, bytes) and not await c.send_raw(data):
                        break
                if c.gone:
                    break
        elif "mark" in s:
            for name in s["mark"]:
                self.marks[name] = len(self.actors[name].inbox)
        elif "expect" in s:
            await self.expect(s)
        elif "sync" in s:
            assert await self.actors[s["sync"]].sync(), f"{s['sync']} was closed"
        elif "closed" in s:
            code = await self.actors[s["closed"]].closed(timeout=s.get("timeout", 15))
            assert matches(code, s["code"]), f"closed with {code}, wanted {s['code']}"
        elif "http" in s:
            await self.http(s)
        elif "state_growth" in s:
            await self.state_growth(s)
        else:
            raise ValueError(f"unknown step {s}")

    async def expect(self, s: dict[str, Any]) -> None:
        name = s["expect"]
        c = self.actors[name]
        want = s.get("match", {})

        def found() -> dict[str, Any] | None:
            for msg in c.inbox[self.marks[name] :]:
                if msg.get("type") == s["type"] and all(
                    matches(lookup(msg, k), v) for k, v in want.items()
                ):
                    return msg
            return None

        try:
            async with asyncio.timeout(s.get("timeout", 15)):
                while found() is None:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            got = [m for m in c.inbox[self.marks[name] :] if m.get("type") == s["type"]]
            raise AssertionError(
                f"{name}: no {s['type']} matching {want}; got {json.dumps(got)[:1500]}"
            ) from None

    async def http(self, s: dict[str, Any]) -> None:
        headers = {}
        if s.get("auth") == "admin":
            admin = auth.issue(SECRET, room="*", identity="ops", grants=["admin"])
            headers["Authorization"] = f"Bearer {admin}"
        body = build(s.get("raw", "")).encode("utf-8", "surrogatepass")
        async with (
            aiohttp.ClientSession() as http,
            http.request(s["http"], self.hub.url + s["path"], data=body, headers=headers) as r,
        ):
            text = await r.text()
            assert matches(r.status, s["status"]), f"HTTP {r.status}: {text[:500]}"
            if r.status >= 400:
                try:
                    refusal = json.loads(text)
                except ValueError:
                    refusal = None
                assert isinstance(refusal, dict) and "error" in refusal, (
                    f"HTTP {r.status}: the refusal is not {{error, message}} JSON: {text[:200]!r}"
                )
            if "save_token" in s and r.status == 201:
                self.tokens[s["save_token"]] = json.loads(text)["token"]

    async def state_growth(self, s: dict[str, Any]) -> None:
        """Send a template `first` times, measure the hub's live state, send it `then`
        times more: the state may not grow by more than `max_growth` bytes."""
        c = self.actors[s["state_growth"]]
        template = build(s["raw"])
        sent = 0

        async def send(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                await c.send_text(template.replace("{n}", str(sent)))
                sent += 1
            assert await c.sync(timeout=60), "closed"

        await send(s["first"])
        before = deep_size(self.hub.hub)
        await send(s["then"])
        growth = deep_size(self.hub.hub) - before
        assert growth <= s["max_growth"], (
            f"hub state grew by {growth} bytes over {s['then']} more messages"
        )


def deep_size(root: object) -> int:
    """Bytes reachable from root through instances, containers and strings (not through
    modules, classes or functions): the hub's live state, measured without naming it."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    skip = (type, type(sys), type(deep_size))
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj, 0)
        stack.extend(gc.get_referents(obj))
    return total


@pytest.mark.parametrize("path", [_param(p) for p in CASES])
async def test_corpus_case(start_hub: StartHub, path: Path) -> None:
    case = load_case(path)
    limits = OPEN_LIMITS if case.get("limits", "open") == "open" else {"captions": False}
    hub = await start_hub(**{**limits, **case.get("settings", {})})
    arena = Arena(hub, room="lobby")
    replay = Replay(hub, arena)
    try:
        for i, s in enumerate(case["steps"]):
            try:
                with FAILURES:
                    await replay.step(s)
                assert not arena.trouble.items, arena.trouble.items
            except AssertionError as exc:
                raise AssertionError(f"step {i} {json.dumps(s)[:300]}: {exc}") from None
        for room in sorted(replay.rooms or {"lobby"}):
            arena.room = room
            await arena.assert_room_usable()
        assert not arena.trouble.items, arena.trouble.items
    finally:
        await arena.close()


def test_corpus_is_not_empty() -> None:
    assert len(CASES) >= 7
    for path in CASES:
        case = load_case(path)
        assert case["about"] and case["steps"], path
