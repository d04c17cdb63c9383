"""Imagery moderation end to end: a real aiortc publisher, the real nudenet detector.

No offensive material anywhere: the blocked labels are a setting, so these tests block a
harmless one (`FACE_FEMALE`) and publish a real photo that has one (scikit-image's
astronaut); a test pattern with no face must keep flowing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from skimage import data

from commhub.config import Settings, SettingsError
from commhub.media.forward import Publication
from commhub.moderation.imagery import IMAGERY, ImageryModerator
from commhub.moderation.labels import EXPLICIT_LABELS, NUDENET_LABELS
from commhub.sdk import RoomClient
from tests.conftest import Running, StartHub, run_cli
from tests.helpers.media import Clients, PatternTrack, PictureTrack, carries_pattern, media_settings
from tests.helpers.metrics import metric
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

MODERATOR = ["publish", "subscribe", "chat", "moderate"]


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])  # RGB -> BGR


def sharpness(picture: np.ndarray) -> float:
    """Variance of the Laplacian: high for a detailed picture, near 0 for a blurred one."""
    grey = cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def imagery_settings(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "imagery": True,
        "imagery_labels": ["FACE_FEMALE"],
        "imagery_interval": 1.0,
        "imagery_threshold": 0.4,
        "media_stall_timeout": 30.0,
    }
    return media_settings(**{**base, **extra})


@pytest.fixture
async def clients(start_hub: StartHub) -> AsyncIterator[tuple[Running, Clients]]:
    hub = await start_hub(**imagery_settings())
    cs = Clients(hub)
    yield hub, cs
    await cs.close()


def slot_of(hub: Running, subscriber: RoomClient) -> Any:
    session = hub.hub.media.sessions[subscriber.pid]
    return next(s for s in session.slots if s.track.kind == "video" and s.publication)


def video_of(hub: Running, owner: RoomClient) -> Publication:
    rm = hub.hub.media.rooms["lobby"]
    return next(p for p in rm.publications.values() if p.owner_id == owner.pid)


async def frames(track: Any, count: int, timeout: float = 20.0) -> list[Any]:
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            got.append(await track.recv())
    return got


def test_labels_are_nudenets() -> None:
    import nudenet.nudenet as nn

    assert tuple(getattr(nn, "__labels")) == NUDENET_LABELS
    assert set(EXPLICIT_LABELS) <= set(NUDENET_LABELS)
    assert Settings.load(env={}).imagery_labels == list(EXPLICIT_LABELS)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("imagery_labels", '["FACE_FEMALE", "NOT_A_LABEL"]', "NOT_A_LABEL"),
        ("imagery_labels", "[]", "non-empty"),
        ("imagery_labels", '{"a": 1}', "expected list"),
        ("imagery_threshold", "0", "(0, 1]"),
        ("imagery_threshold", "1.5", "(0, 1]"),
        ("imagery_threshold", "high", "expected float"),
        ("imagery_interval", "0.1", "0.5..3600"),
        ("imagery_cpu_budget", "0", "> 0 cores"),
        ("imagery_queue", "0", "1..64"),
    ],
)
def test_bad_settings_are_named(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.load(env={f"COMMHUB_{name.upper()}": value})
    assert name in str(err.value) and says in str(err.value)


def test_serve_refuses_an_unknown_label(tmp_path: Path) -> None:
    proc = run_cli(
        "serve",
        "--data-dir",
        str(tmp_path),
        env={"COMMHUB_IMAGERY_LABELS": '["NAKED"]', "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "COMMHUB_IMAGERY_LABELS" in proc.stderr and "NAKED" in proc.stderr
    assert "FACE_FEMALE" in proc.stderr  # the known labels are listed


async def test_flagged_track_stops_and_is_reported(
    clients: tuple[Running, Clients], loop_watch: Any
) -> None:
    hub, cs = clients
    bob = await cs.join("bob")
    await bob.negotiate()
    mod = await cs.join("mod", grants=MODERATOR)
    await mod.negotiate()
    alice = await cs.join("alice")
    told_alice = alice.expect("track_blocked", timeout=60)
    told_mod = mod.expect("track_blocked", timeout=60)
    muted = bob.expect("track", timeout=60, state="updated")
    await alice.publish(PictureTrack(astronaut()))

    blocked = await told_alice
    assert blocked["participant"] == alice.pid and blocked["reason"] == "imagery"
    assert blocked["label"] == "FACE_FEMALE" and 0.4 <= blocked["score"] <= 1
    assert blocked["track"]["kind"] == "video"
    assert (await told_mod)["track"] == blocked["track"]
    update = await muted
    assert update["participant"] == alice.pid and update["track"]["muted"] is True
    assert not bob.received("track_blocked")  # neither the publisher nor a moderator

    # Nothing of the track is forwarded any more, though the publisher keeps sending.
    pub = video_of(hub, alice)
    assert pub.suppressed == {"imagery"}
    slot = slot_of(hub, bob)
    before, sent = slot.track.forwarded, pub.frames
    await asyncio.sleep(2.0)
    assert pub.frames > sent + 5
    assert slot.track.forwarded == before
    assert hub.hub.media.suppressions("lobby", alice.pid) == [
        {"track_id": pub.track_id, "kind": None, "reason": "imagery"}
    ]

    # The evidence: one blurred frame, indexed by room and identity.
    imagery: ImageryModerator = hub.server.app[IMAGERY]
    kept = imagery.evidence_frames("lobby", "alice")
    assert len(kept) == 1 and kept[0]["label"] == "FACE_FEMALE"
    assert kept[0]["track"] == pub.track_id and kept[0]["score"] == blocked["score"]
    stored = await asyncio.to_thread(cv2.imread, kept[0]["path"])
    assert stored is not None and stored.shape == astronaut().shape
    original = sharpness(astronaut())
    assert sharpness(stored) < original / 50, (sharpness(stored), original)
    # the picture is still the photo, blurred: its mean colour is close
    assert np.abs(stored.mean(axis=(0, 1)) - astronaut().mean(axis=(0, 1))).max() < 25
    assert imagery.evidence_frames("lobby", "bob") == []

    assert await metric(hub.url, "commhub_imagery_frames_flagged_total", label="FACE_FEMALE") == 1
    assert await metric(hub.url, "commhub_imagery_frames_sampled_total") >= 1
    assert await metric(hub.url, "commhub_imagery_classify_seconds_count") >= 1


async def test_clean_video_keeps_flowing(clients: tuple[Running, Clients]) -> None:
    hub, cs = clients
    bob = await cs.join("bob")
    await bob.negotiate()
    alice = await cs.join("alice")
    await alice.publish(PatternTrack())
    await wait_for(lambda: any(r.meta["kind"] == "video" for r in bob.remote.values()))
    remote = next(r for r in bob.remote.values() if r.meta["kind"] == "video")

    async def sampled() -> float:
        return await metric(hub.url, "commhub_imagery_frames_sampled_total")

    async with asyncio.timeout(60):
        while await sampled() < 3:
            await asyncio.sleep(0.3)
    got = await frames(remote.track, 10)
    assert all(carries_pattern(f) for f in got[-3:])
    assert not alice.received("track_blocked")
    assert not video_of(hub, alice).suppressed
    assert await metric(hub.url, "commhub_imagery_frames_flagged_total") == 0


async def test_over_budget_samples_less_and_says_so(start_hub: StartHub) -> None:
    hub = await start_hub(**imagery_settings(imagery_cpu_budget=0.0001, imagery_interval=0.5))
    cs = Clients(hub)
    try:
        alice = await cs.join("alice")
        await alice.publish(PatternTrack())
        await wait_for(lambda: bool(hub.hub.media.rooms.get("lobby", None)))

        async def skipped() -> float:
            return await metric(hub.url, "commhub_imagery_frames_skipped_total", reason="budget")

        async with asyncio.timeout(60):
            while await skipped() < 3:
                await asyncio.sleep(0.3)
        # a ten-thousandth of a core never pays for a whole sample
        assert await metric(hub.url, "commhub_imagery_frames_sampled_total") == 0
    finally:
        await cs.close()


async def test_suppress_and_release_a_track(start_hub: StartHub) -> None:
    """The media primitive the moderator actions reuse (imagery off here)."""
    hub = await start_hub(**media_settings(media_stall_timeout=30.0))
    media = hub.hub.media
    cs = Clients(hub)
    try:
        bob = await cs.join("bob")
        await bob.negotiate()
        alice = await cs.join("alice")
        with pytest.raises(ValueError, match="kind"):
            await media.suppress("lobby", alice.pid, kind="screen", reason="moderator")
        with pytest.raises(ValueError, match="reason"):
            await media.suppress("lobby", alice.pid, reason="")
        # A rule made before the track exists holds it from its first frame.
        assert await media.suppress("lobby", alice.pid, kind="video", reason="moderator") == []
        published = bob.expect("track", state="published")
        await alice.publish(PatternTrack())
        assert (await published)["track"]["muted"] is True
        await wait_for(lambda: any(r.meta["kind"] == "video" for r in bob.remote.values()))
        remote = next(r for r in bob.remote.values() if r.meta["kind"] == "video")
        pub = video_of(hub, alice)
        await wait_for(lambda: pub.frames > 20)
        assert slot_of(hub, bob).track.forwarded == 0

        unmuted = bob.expect("track", state="updated")
        resumed = await media.release("lobby", alice.pid, kind="video", reason="moderator")
        assert [t["muted"] for t in resumed] == [False]
        assert (await unmuted)["track"]["muted"] is False
        # frames flow, from a key frame: the subscriber decodes the pattern
        got = await frames(remote.track, 10)
        assert carries_pattern(got[-1])

        # Rules with different reasons stack; the track flows when the last one goes.
        muted = bob.expect("track", state="updated")
        stopped = await media.suppress("lobby", alice.pid, track_id=pub.track_id, reason="imagery")
        assert [t["muted"] for t in stopped] == [True]
        assert (await muted)["track"]["muted"] is True
        assert await media.suppress("lobby", alice.pid, reason="moderator") == []
        slot = slot_of(hub, bob)
        before = slot.track.forwarded
        await asyncio.sleep(1.5)
        assert slot.track.forwarded == before
        assert await media.release("lobby", alice.pid, reason="moderator") == []
        await asyncio.sleep(0.5)
        assert slot.track.forwarded == before
        unmuted = bob.expect("track", state="updated")
        resumed = await media.release("lobby", alice.pid, track_id=pub.track_id)  # any reason
        assert [t["muted"] for t in resumed] == [False]
        assert (await unmuted)["track"]["muted"] is False
        await frames(remote.track, 30)
        assert slot.track.forwarded > before
        assert media.suppressions("lobby", alice.pid) == []
    finally:
        await cs.close()
