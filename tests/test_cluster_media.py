"""Several nodes, with media: people entering through different nodes hear each other and
read each other's captions in their own languages (real aiortc peers, real pocketsphinx and
Apertium, two hubs sharing a real redis-server)."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiortc.contrib.media import MediaPlayer

from commhub.sdk import RoomClient
from tests.conftest import Running, StartHub
from tests.helpers.audio import POCKETSPHINX_DATA, silence, write_wav
from tests.helpers.media import LOOPBACK, ToneTrack
from tests.helpers.sdk import Ears, close_all, now
from tests.helpers.services import RedisServer
from tests.helpers.wait import wait_for
from tests.test_cluster import start_node

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def english_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = (POCKETSPHINX_DATA / "goforward.raw").read_bytes()
    path = tmp_path_factory.mktemp("cluster") / "goforward.wav"
    return write_wav(path, silence(0.5) + raw + silence(1.5))


async def test_people_on_different_nodes_hear_and_read_each_other(
    start_hub: StartHub, redis_server: RedisServer, english_wav: Path
) -> None:
    media = {"ice_host_addresses": list(LOOPBACK), "captions": True, "translation": True}
    a = await start_node(start_hub, redis_server, "node-a", **media)
    b = await start_node(start_hub, redis_server, "node-b", **media)

    def client(node: Running, identity: str, speak: str, read: str) -> RoomClient:
        token = node.token("consulate", identity, speak=speak, read=read)
        return RoomClient(node.url, token, ice_hosts=LOOPBACK, check_schemas=True)

    resident = client(a, "resident", "en", "en")
    agent = client(b, "agent-es", "es", "es")
    ears, resident_ears = Ears(agent), Ears(resident)
    tone = ToneTrack()
    player = MediaPlayer(str(english_wav))
    try:
        await resident.connect()
        await agent.connect()
        assert resident.node_url == agent.node_url  # one of them was sent to the owner
        assert resident.redirects + agent.redirects == 1
        final = agent.expect("caption", timeout=90, final=True)
        since = now()
        assert player.audio is not None
        await resident.publish(player.audio)
        await agent.publish(tone)
        got = await final
        assert got["speaker"] == resident.pid and got["text"] == "go forward ten meters"
        assert got["translation"]["status"] == "ok"
        assert got["translation"]["text"] == "Va de frente diez metros"
        await wait_for(lambda: resident_ears.heard(agent, since), 30, "the agent's voice")
        assert ears.heard(resident, since, frames=10), "the resident's voice"
    finally:
        if player.audio is not None:
            player.audio.stop()
        tone.running.clear()
        await close_all(resident, agent, ears, resident_ears)
