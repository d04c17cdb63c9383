"""Glare: a client offer that crosses the hub's own offer. The hub is the polite side: it
withdraws its offer (the client ignores it), answers the client's, then offers again; a
client on a WebRTC stack without rollback (aiortc here) never needs one."""

from __future__ import annotations

from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from commhub.rtc.ice import IcePolicy, policy_scope
from tests.conftest import Running, StartHub
from tests.helpers.media import LOOPBACK, ToneTrack
from tests.helpers.wait import wait_for
from tests.wsclient import SignalClient

pytestmark = pytest.mark.e2e

ROUNDS = 8
POLICY = IcePolicy(hosts=LOOPBACK)


class Peer:
    """A signalling client with a hand-driven aiortc peer connection to the hub."""

    def __init__(self, client: SignalClient) -> None:
        self.client = client
        self.pc = RTCPeerConnection()
        self.seen = 0  # hub offers looked at so far (in client.inbox order)

    def hub_offers(self) -> list[dict[str, Any]]:
        return self.client.received("offer")

    async def offer(self, ref: str) -> dict[str, Any]:
        """Offer and apply the hub's answer (refused: the test fails)."""
        with policy_scope(POLICY):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        await self.client.send({"type": "offer", "id": ref, "sdp": self.pc.localDescription.sdp})
        await wait_for(
            lambda: any(
                m.get("ref") == ref for m in self.client.inbox if m["type"] in ("answer", "error")
            ),
            timeout=20,
        )
        reply = next(m for m in self.client.inbox if m.get("ref") == ref)
        assert reply["type"] == "answer", reply
        await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))
        return reply

    async def answer_new_offers(self) -> None:
        """Answer every hub offer not looked at yet, in order."""
        while self.seen < len(self.hub_offers()):
            offer = self.hub_offers()[self.seen]
            self.seen += 1
            await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            with policy_scope(POLICY):
                await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self.client.send({"type": "answer", "sdp": self.pc.localDescription.sdp})

    async def settle(self) -> None:
        """Answer hub offers until a ping round trip brings no new one."""
        for i in range(20):
            await self.answer_new_offers()
            await self.client.send({"type": "ping", "id": f"settle-{i}"})
            await self.client.expect("pong", ref=f"settle-{i}")
            if self.seen == len(self.hub_offers()):
                return
        raise AssertionError("the hub kept offering")


async def test_crossed_offers_need_no_rollback(start_hub: StartHub) -> None:
    hub: Running = await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False
    )
    x = Peer(await hub.joined(identity="x"))
    q = Peer(await hub.joined(identity="q"))
    try:
        x.pc.addTransceiver("audio", direction="recvonly")  # a subscriber opens its connection
        await x.offer("x-open")
        await x.settle()
        sessions = hub.hub.media.sessions
        published: list[str] = []
        for i in range(ROUNDS):
            # q publishes a new track and stops its last one: the hub renegotiates x...
            for t in q.pc.getTransceivers():
                if t.sender.track is not None and t.direction == "sendonly":
                    t.direction = "inactive"
            track = ToneTrack()
            q.pc.addTransceiver(track, direction="sendonly")
            published.append(track.id)
            before = len(x.hub_offers())
            await q.offer(f"q-{i}")
            await q.settle()
            await wait_for(lambda n=before: len(x.hub_offers()) > n, timeout=20)
            # ...and x, not having looked at that offer, offers too: the offers cross
            x.seen = len(x.hub_offers())  # what a client with its own offer out ignores
            withdrawn = sessions[x.client.pid].withdrawn
            answer = await x.offer(f"x-{i}")
            assert answer["ref"] == f"x-{i}"
            assert sessions[x.client.pid].withdrawn == withdrawn + 1
            await x.settle()  # the hub's fresh offer, answered
            assert x.pc.signalingState == "stable"
            carried = {s["track"]["id"] for s in x.hub_offers()[-1]["tracks"]}
            assert carried == {published[-1]}, (carried, published[-1])
        assert not x.client.received("error") and not q.client.received("error")
        assert sessions[x.client.pid].withdrawn == ROUNDS
    finally:
        await x.pc.close()
        await q.pc.close()
