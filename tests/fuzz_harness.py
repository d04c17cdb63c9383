"""The fuzz arena: a real hub, a room with bystanders, and a fuzzer that reconnects
whenever the hub (rightly) closes it. Hypothesis drives it from a worker thread while the
hub runs on the test's event loop.

A run does not stop at the first fault: every distinct fault (its kind, e.g.
"internal_error" or "schema: chat") is kept with the shortest input that caused it, and
the test then fails listing them all, so one CI run shows everything that is still wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import time
import types
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import Running
from tests.fuzz_wire import FAILURES, RawClient, Trouble

T = TypeVar("T")

# Limits far above anything the fuzzer sends, so the limiter never hides a handler bug.
# One test (test_fuzz_default_limits) keeps the defaults.
OPEN_LIMITS: dict[str, Any] = {
    "rate_limit": 1e6,
    "rate_burst": 10**6,
    "byte_rate": 10**9,
    "byte_burst": 10**9,
    "join_rate": 1e6,
    "join_burst": 10**6,
    "max_connections_per_identity": 1000,
    "captions": False,
    "ice_host_addresses": ["127.0.0.1"],
}

# COMMHUB_FUZZ_SCALE=10 runs ten times the examples (a longer local hunt).
SCALE = float(os.environ.get("COMMHUB_FUZZ_SCALE", "1"))
# COMMHUB_FUZZ_SHRINK=1 lets Hypothesis shrink a failing example (slow against a live hub).
SHRINK = os.environ.get("COMMHUB_FUZZ_SHRINK") == "1"

# Close codes the hub may use on a fuzzer: 1000 after `leave`, 1002 protocol error,
# 1007 invalid UTF-8, 1008 flooding, 1009 frame too big.
FAIR_CLOSES = {1000, 1002, 1007, 1008, 1009}


def fuzz_settings(examples: int) -> Any:
    phases = [Phase.explicit, Phase.generate] + ([Phase.shrink] if SHRINK else [])
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,  # the same cases every run: CI failures reproduce
        database=None,
        phases=phases,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


@dataclass
class Findings:
    """Distinct faults, each with the shortest input that caused it, and the case count."""

    cases: int = 0
    examples: int = 0
    faults: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind -> (input, detail)
    counts: Counter[str] = field(default_factory=Counter)

    def note(self, trouble: list[str], given_input: str) -> None:
        for item in trouble:
            kind = item.split(": ", 2)[1].strip() if item.count(": ") >= 2 else item
            kind = kind[:160]
            self.counts[kind] += 1
            old = self.faults.get(kind)
            if old is None or len(given_input) < len(old[0]):
                self.faults[kind] = (given_input, item)

    def report(self) -> str:
        lines = [f"{len(self.faults)} distinct fault(s) in {self.cases} cases:"]
        for kind, (inp, detail) in self.faults.items():
            lines.append(f"- {kind} (x{self.counts[kind]}): {detail}\n    input: {inp[:700]}")
        return "\n".join(lines)


async def hypothesis_run(
    strategy: st.SearchStrategy[T],
    body: Callable[[T], Awaitable[int]],
    examples: int,
    findings: Findings,
    trouble: Trouble,
    reset: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run body(example) for each example Hypothesis draws (in a worker thread; body runs
    on this loop). body returns how many cases (frames/messages) it sent. An example that
    gets stuck (a reply that never comes) is a fault too: `reset` gives the next example a
    fresh start, and after three the run stops (the hub is too broken to go on)."""
    loop = asyncio.get_running_loop()
    stuck = 0

    async def one(example: T) -> None:
        nonlocal stuck
        if stuck >= 3:
            return
        mark = len(trouble.items)
        try:
            findings.cases += await body(example)
        except (TimeoutError, ConnectionError, AssertionError) as exc:
            stuck += 1
            trouble.add(f"harness: stuck: {type(exc).__name__} {str(exc)[:300]}")
            if reset is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(15):
                        await reset()
        findings.examples += 1
        found = trouble.items[mark:]
        del trouble.items[mark:]
        if found:
            findings.note(found, _show(example))

    @fuzz_settings(examples)  # type: ignore[untyped-decorator]
    @given(strategy)
    def prop(example: T) -> None:
        asyncio.run_coroutine_threadsafe(one(example), loop).result(timeout=120)

    with FAILURES:
        await asyncio.to_thread(prop)


def _show(example: Any) -> str:
    text = repr(example)
    return text if len(text) < 2000 else text[:1000] + f"...<{len(text)} chars>..." + text[-300:]


class Arena:
    """A room with a bystander (`watcher`) and a `fuzzer` participant that is reconnected
    after the hub closes it. Checks after every example: the bystander saw only valid
    messages and is still served; the fuzzer was closed only for a fair reason."""

    def __init__(self, hub: Running, room: str = "fuzz", fuzzer_lang: str = "en") -> None:
        self.hub = hub
        self.room = room
        port = hub.server.port
        assert port is not None
        self.port: int = port
        self.trouble = Trouble()
        self.findings = Findings()
        self.fuzzer_lang = fuzzer_lang
        self.fuzzer: RawClient | None = None
        self.watchers: list[RawClient] = []
        self.closes: Counter[int | None] = Counter()
        self.fair_closes = set(FAIR_CLOSES)
        self.clients: list[RawClient] = []
        self.everyone: list[RawClient] = []  # every client this arena made, closed ones too
        self._n = 0

    async def connect(self, identity: str, room: str | None = None, **claims: Any) -> RawClient:
        token = self.hub.token(room or self.room, identity, **claims)
        c = await RawClient.connect(self.port, token, self.trouble, identity)
        c.identity, c.room = identity, room or self.room
        self.everyone.append(c)
        self.clients.append(c)
        return c

    async def add_watcher(self, identity: str, speak: str = "en", read: str = "en") -> RawClient:
        w = await self.connect(identity, speak=speak, read=read)
        await w.join()
        self.watchers.append(w)
        return w

    async def new_fuzzer(self, join: str | None = None, before: list[str] | None = None) -> None:
        """A fresh fuzzer connection; `before` frames go before the join, `join` is the raw
        join frame to try first (a plain join follows when it is refused)."""
        await self.drop_fuzzer()
        self._n += 1
        c = await self.connect("fuzzer", speak=self.fuzzer_lang, read=self.fuzzer_lang)
        self.fuzzer = c
        for text in before or []:
            await c.send_text(text)
        if join is not None:
            start = len(c.inbox)
            await c.send_text(join)
            if not await c.sync():
                self._closed(c)
                return await self.new_fuzzer()
            if any(m["type"] == "joined" for m in c.inbox[start:]):
                return None
        await c.join()
        return None

    async def drop_fuzzer(self) -> None:
        if self.fuzzer is not None:
            await self.fuzzer.close()
            self.clients.remove(self.fuzzer)
            self.fuzzer = None

    def closed(self, c: RawClient) -> None:
        """Count a connection the hub closed, and judge the reason."""
        self._closed(c)

    def _closed(self, c: RawClient) -> None:
        self.closes[c.close_code] += 1
        if c.close_code not in self.fair_closes:
            self.trouble.add(
                f"{c.label}: closed {c.close_code}: reason {c.close_reason[:100]!r}; "
                f"last messages {c.inbox[-2:]}"
            )

    async def ready(self) -> RawClient:
        if self.fuzzer is None or self.fuzzer.gone:
            if self.fuzzer is not None:
                self._closed(self.fuzzer)
            await self.new_fuzzer()
        assert self.fuzzer is not None
        return self.fuzzer

    async def settle(self) -> None:
        """Wait until the hub handled everything the fuzzer sent; check the bystanders."""
        f = self.fuzzer
        if f is not None and not f.gone:
            try:
                alive = await f.sync()
            except TimeoutError:
                self.trouble.add(f"{f.label}: stalled: no pong within 30 s; last {f.inbox[-2:]}")
                await self.new_fuzzer()
            else:
                if not alive:
                    self._closed(f)
                    await self.new_fuzzer()
        for w in self.watchers:
            if w.gone or not await w.sync():
                self.trouble.add(f"{w.label}: bystander lost: closed {w.close_code}")
                self.watchers.remove(w)
                await self.add_watcher(w.label + "+")

    def assert_all_encodable(self) -> None:
        """No string the hub keeps (rooms, history, participants, media, caches) holds a
        lone surrogate: whatever it keeps, it can send."""
        bad = unencodable(self.hub.hub)
        if bad:
            self.trouble.add(
                f"after the run: unencodable state: {len(bad)} strings, e.g. {bad[:3]}"
            )

    async def assert_no_ghosts(self) -> None:
        """The room's participants (admin API) are exactly the clients still connected and
        joined: a connection the hub closed, or one that dropped, left no ghost behind."""
        live = sorted(c.identity for c in self.live())
        admin = self.hub.token("*", "ops", grants=["admin"])
        seen: list[str] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(60):  # a close in flight settles within a few loop turns
                async with http.get(
                    f"{self.hub.url}/v1/admin/rooms/{self.room}",
                    headers={"Authorization": f"Bearer {admin}"},
                ) as r:
                    body = await r.json() if r.status == 200 else {"participants": []}
                seen = sorted(p["identity"] for p in body["participants"])
                if seen == live:
                    return
                await asyncio.sleep(0.05)
        self.trouble.add(f"after the run: ghosts: the room holds {seen}, connected are {live}")

    def live(self) -> list[RawClient]:
        return [
            c
            for c in self.clients
            if not c.gone and c.room == self.room and any(m["type"] == "joined" for m in c.inbox)
        ]

    async def assert_room_usable(self, history: bool = True) -> dict[str, Any]:
        """After the run: a newcomer joins (with the chat history, so everything the hub
        stored still encodes), chats, and every bystander receives it."""
        fresh = await self.connect(f"fresh{time.monotonic_ns()}", speak="en", read="en")
        joined = await fresh.join()
        assert isinstance(joined.get("chat"), list), joined
        marker = f"after the storm {time.monotonic_ns()}"
        start = {w.label: len(w.inbox) for w in self.watchers}
        await fresh.send({"type": "chat", "text": marker})
        await fresh.expect("chat", text=marker)
        for w in self.watchers:
            await w.expect("chat", start=start[w.label], text=marker)
        await fresh.close()
        if history:
            late = await self.connect(f"late{time.monotonic_ns()}", speak="en", read="en")
            joined = await late.join()
            assert marker in [m["text"] for m in joined["chat"]], joined["chat"][-3:]
            await late.close()
        return joined

    async def run(
        self, strategy: st.SearchStrategy[T], body: Callable[[T], Awaitable[int]], examples: int
    ) -> None:
        await hypothesis_run(
            strategy, body, examples, self.findings, self.trouble, reset=self.new_fuzzer
        )

    async def verdict(self, minimum_cases: int, history: bool = True) -> None:
        """After the run: the room is still usable (assert_room_usable); then fail listing
        every distinct fault, or when fewer cases ran than the budget promises."""
        f = self.findings
        try:
            async with asyncio.timeout(30):
                await self.assert_no_ghosts()
                self.assert_all_encodable()
                await self.assert_room_usable(history)
        except (TimeoutError, ConnectionError, AssertionError) as exc:
            self.trouble.add(f"after the run: room unusable: {type(exc).__name__} {exc}")
        replies = Counter(
            m["type"] if m["type"] != "error" else m["code"]
            for c in self.everyone
            if c.identity != "watcher"
            for m in c.inbox
        )
        print(
            f"\n[fuzz] {f.examples} examples, {f.cases} cases, closes {dict(self.closes)}\n"
            f"[fuzz] replies {dict(replies.most_common())}",
            flush=True,
        )
        if self.trouble.items:  # found outside the examples (the after-run checks)
            f.note(self.trouble.items, "(after the run: a newcomer joining and chatting)")
            self.trouble.items.clear()
        assert not f.faults, f.report()
        assert f.cases >= minimum_cases * min(1.0, SCALE), (f.cases, minimum_cases)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


_SURROGATE = re.compile("[\ud800-\udfff]")
# Not followed: code, and the running machinery (loop, tasks, frames), which reaches the
# test's own locals; what remains is the data the hub keeps.
_OPAQUE = (
    type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.FrameType,
    types.CoroutineType, types.GeneratorType, types.CodeType, asyncio.AbstractEventLoop,
    asyncio.Future, logging.Logger,
)  # fmt: skip


def unencodable(root: object, limit: int = 2_000_000) -> list[str]:
    """Strings reachable from root that UTF-8 cannot encode (a lone surrogate)."""
    seen: set[int] = set()
    stack = [root]
    found: list[str] = []
    while stack and len(seen) < limit:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            if _SURROGATE.search(obj):
                found.append(repr(obj[:60]))
            continue
        if isinstance(obj, bytes | bytearray | int | float):
            continue
        stack.extend(gc.get_referents(obj))
    return found
