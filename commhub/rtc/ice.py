"""ICE network policy: which host addresses a peer advertises and which UDP ports it binds.

aioice has no per-connection setting for either: it calls the module-level
`get_host_addresses` and binds host candidates to port 0. Both hooks are installed once
and consult a context variable, so the hub's peer connections (and an SDK client that
asks for it) follow their own policy while every other aioice user keeps the defaults.
Gathering runs inside `setLocalDescription`, in the caller's task, so `policy_scope`
around that call is enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

from . import compat


@dataclass(frozen=True)
class IcePolicy:
    hosts: tuple[str, ...] = ()  # empty: every interface address (aioice's default)
    ports: tuple[int, int] | None = None  # inclusive UDP range for host candidates


_policy: contextvars.ContextVar[IcePolicy | None] = contextvars.ContextVar(
    "commhub_ice_policy", default=None
)
_installed = False


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    policy = _policy.get()
    if policy is None or not policy.hosts:
        return list(compat.original_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6))
    return [h for h in policy.hosts if (":" in h and use_ipv6) or (":" not in h and use_ipv4)]


class _PortRangeLoop:
    """The running loop, except that host candidates bind inside the policy's port range."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ports: tuple[int, int]) -> None:
        self._loop = loop
        self._ports = ports

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)

    async def create_datagram_endpoint(self, factory: Any, **kw: Any) -> Any:
        local = kw.get("local_addr")
        if not local or local[1] != 0:
            return await self._loop.create_datagram_endpoint(factory, **kw)
        lo, hi = self._ports
        candidates = list(range(lo, hi + 1))
        random.shuffle(candidates)  # spread concurrent gatherers over the range
        for port in candidates:
            with contextlib.suppress(OSError):
                return await self._loop.create_datagram_endpoint(
                    factory, **{**kw, "local_addr": (local[0], port)}
                )
        raise OSError(f"no free UDP port in {lo}-{hi} on {local[0]}")


class _AsyncioFacade:
    """What aioice.ice sees as `asyncio`: the real module, but a port-range-aware loop."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    def get_running_loop() -> Any:
        loop = asyncio.get_running_loop()
        policy = _policy.get()
        if policy is not None and policy.ports is not None:
            return _PortRangeLoop(loop, policy.ports)
        return loop


def install() -> None:
    """Put the hooks in place (idempotent); without a policy in scope they change nothing."""
    global _installed
    if _installed:
        return
    compat.hook_aioice(_get_host_addresses, _AsyncioFacade())
    compat.guard_connect()
    compat.guard_send()
    _installed = True


@contextlib.contextmanager
def policy_scope(policy: IcePolicy | None) -> Iterator[None]:
    install()
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """aiortc's configuration from the settings' ice_servers (the list `joined` carries)."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
