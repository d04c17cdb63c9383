"""Reports and moderator actions through a real hub, real WebSocket clients and the admin API:
reports with their evidence survive a restart, remove and ban work and need the grant, a ban
holds across tokens until it ends, hostile input gets precise errors."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import numpy as np
import pytest

from commhub.moderation.imagery import IMAGERY
from commhub.sdk.signal import SignalError
from commhub.server.keys import MEDIA
from tests.conftest import SECRET, Running, StartHub, run_cli
from tests.helpers.http import admin_headers, call
from tests.helpers.hubproc import clean_env
from tests.helpers.metrics import metric
from tests.helpers.wait import wait_for
from tests.wsclient import SignalClient

LIGHT = {"captions": False, "translation": False, "moderation": False}
MOD = ["publish", "subscribe", "chat", "moderate"]


@pytest.fixture
async def hub(start_hub: StartHub) -> Running:
    return await start_hub(**LIGHT)


async def error_to(c: SignalClient, msg: dict[str, Any]) -> dict[str, Any]:
    """The error the hub answers msg with (msg gets an id; its reply must be the error)."""
    with pytest.raises(SignalError) as caught:
        await c.request(msg, timeout=15)
    return caught.value.msg


async def test_a_report_reaches_moderators_and_survives_a_restart_with_its_evidence(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(**LIGHT)
    alice = await hub.joined("town", "alice", read="ko")
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob", speak="en")
    for text in ("hello", "you are all idiots", "get out of here"):
        await bob.request({"type": "chat", "text": text})
    said = await alice.expect("chat", text="get out of here", timeout=15)
    assert said["translation"]["lang"] == "ko"  # what alice read beside the original

    reply = await alice.request(
        {"type": "report", "participant": bob.pid, "reason": "harassment",
         "message_id": said["id"], "note": "  insults everyone  "}, timeout=15,
    )  # fmt: skip
    assert reply["type"] == "reported" and reply["report_id"].startswith("RP_")
    filed = (await mod.expect("report_filed", timeout=15))["report"]
    assert filed["id"] == reply["report_id"]
    assert filed["participant"]["identity"] == "bob" and filed["reporter"]["identity"] == "alice"
    assert filed["reason"] == "harassment" and filed["note"] == "insults everyone"
    assert filed["evidence"] == 3
    assert await metric(hub.url, "commhub_reports_total", reason="harassment") == 1
    await asyncio.sleep(0.3)
    assert not bob.received("report_filed"), "the reported participant is not told"

    status, ban = await call(
        http, "POST", f"{hub.url}/v1/rooms/town/bans", json={"identity": "carol", "duration": 600},
        headers=admin_headers(),
    )  # fmt: skip
    assert status == 201, ban

    await hub.server.close()  # the hub goes away; a new one opens the same data dir
    again = await start_hub(**LIGHT)
    carol = await again.client("town", "carol")
    await carol.send({"type": "join"})
    err = await carol.expect("error", timeout=15)
    assert err["code"] == "banned" and err["until"] == pytest.approx(ban["until"], abs=0.01)
    url = f"{again.url}/v1/reports/{reply['report_id']}"
    status, report = await call(http, "GET", url, headers=admin_headers())
    assert status == 200, report
    assert report["status"] == "open" and report["room"] == "town"
    assert report["message_id"] == said["id"]
    lines = report["evidence"]["lines"]
    assert [x["text"] for x in lines] == ["hello", "you are all idiots", "get out of here"]
    assert all(x["kind"] == "chat" and x["lang"] == "en" for x in lines)
    assert lines[1]["translations"]["ko"]["status"] == "unavailable"  # translation is off
    assert report["evidence"]["frames"] == []

    # a room's admin sees its own room only
    status, body = await call(http, "GET", url, headers=admin_headers("elsewhere"))
    assert status == 403 and body["error"] == "forbidden"
    status, listed = await call(
        http, "GET", f"{again.url}/v1/reports?room=town&status=open", headers=admin_headers("town")
    )
    assert status == 200 and [r["id"] for r in listed["reports"]] == [reply["report_id"]]
    assert listed["reports"][0]["evidence"] == {"lines": 3, "frames": 0}

    status, done = await call(
        http, "POST", url + "/resolve", json={"resolution": "warned"}, headers=admin_headers()
    )
    assert status == 200 and done["status"] == "resolved" and done["resolution"] == "warned"
    assert done["resolved_by"] == "ops"
    status, body = await call(
        http, "POST", url + "/resolve", json={"resolution": "again"}, headers=admin_headers()
    )
    assert status == 409 and body["error"] == "already_resolved"
    status, listed = await call(
        http, "GET", f"{again.url}/v1/reports?status=open", headers=admin_headers()
    )
    assert listed["reports"] == []
    status, body = await call(
        http, "GET", f"{again.url}/v1/reports?status=maybe", headers=admin_headers()
    )
    assert status == 400 and body["error"] == "invalid_request"
    status, body = await call(
        http, "GET", f"{again.url}/v1/reports/RP_nope", headers=admin_headers()
    )
    assert status == 404 and body["error"] == "report_not_found"


async def test_reports_are_rate_limited_per_reporter(start_hub: StartHub) -> None:
    hub = await start_hub(report_limit=2, **LIGHT)
    alice = await hub.joined("town", "alice")
    bob = await hub.joined("town", "bob")
    for _ in range(2):
        await alice.request({"type": "report", "participant": bob.pid, "reason": "spam"})
    err = await error_to(alice, {"type": "report", "participant": bob.pid, "reason": "spam"})
    assert err["code"] == "rate_limited" and "at most 2 reports" in err["message"]
    # the limit is the reporter's: bob may still report
    reply = await bob.request({"type": "report", "participant": alice.pid, "reason": "other"})
    assert reply["type"] == "reported"


async def test_hostile_reports_and_actions_get_precise_errors(hub: Running) -> None:
    alice = await hub.joined("town", "alice")
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob")
    absent = "PA_nobodyHere12"
    cases: list[tuple[SignalClient, dict[str, Any], str, str]] = [
        (alice, {"type": "report", "participant": absent, "reason": "spam"},
         "unknown_participant", absent),
        (alice, {"type": "report", "participant": alice.pid, "reason": "spam"},
         "invalid_message", "yourself"),
        (alice, {"type": "report", "participant": bob.pid, "reason": "meh"},
         "invalid_message", "reason"),
        (alice, {"type": "report", "participant": bob.pid, "reason": "spam", "note": "x" * 1001},
         "invalid_message", "note"),
        (alice, {"type": "report", "participant": "robert'); drop", "reason": "spam"},
         "invalid_message", "participant"),
        (alice, {"type": "report", "participant": bob.pid, "reason": "spam", "extra": 1},
         "invalid_message", "extra"),
        (mod, {"type": "moderate", "action": "mute", "participant": absent},
         "unknown_participant", absent),
        (mod, {"type": "moderate", "action": "remove", "participant": mod.pid},
         "invalid_message", "yourself"),
        (mod, {"type": "moderate", "action": "remove", "participant": bob.pid, "kind": "audio"},
         "invalid_message", "kind"),
        (mod, {"type": "moderate", "action": "mute", "participant": bob.pid, "duration": 5},
         "invalid_message", "duration"),
        (mod, {"type": "moderate", "action": "ban", "participant": bob.pid, "duration": -1},
         "invalid_message", "duration"),
        (mod, {"type": "moderate", "action": "ban", "participant": "x" * 129},
         "invalid_message", "participant"),
        (mod, {"type": "moderate", "action": "unban", "participant": "carol"},
         "wrong_state", "not banned"),
        (mod, {"type": "moderate", "action": "unmute", "participant": bob.pid},
         "wrong_state", "not muted"),
        (mod, {"type": "moderate", "action": "explode", "participant": bob.pid},
         "invalid_message", "action"),
    ]  # fmt: skip
    for who, msg, code, words in cases:
        err = await error_to(who, msg)
        assert err["code"] == code, (msg, err)
        assert words in err["message"], (msg, err)
    # a lone surrogate anywhere (the note, the reason) is refused before anything is kept
    raw = {"type": "report", "id": "s1", "participant": bob.pid, "reason": "spam", "note": "aXb"}
    await alice.ws.send_str(json.dumps(raw).replace("X", "\\ud800"))
    err = await alice.expect("error", ref="s1", timeout=15)
    assert err["code"] == "invalid_message" and "surrogate" in err["message"]
    # nothing was stored, everyone is still here and the hub answers
    assert await hub.hub.store.reports() == []  # type: ignore[union-attr]
    assert (await bob.request({"type": "ping"}))["type"] == "pong"
    assert len(hub.hub.rooms.get("town").participants) == 3  # type: ignore[union-attr]


async def test_moderate_needs_the_grant(hub: Running) -> None:
    alice = await hub.joined("town", "alice")
    bob = await hub.joined("town", "bob")
    boss = await hub.joined("town", "boss", grants=["admin"])
    mod = await hub.joined("town", "mod", grants=MOD)
    for action in ("mute", "remove", "ban"):  # a moderator cannot act on an administrator
        msg = {"type": "moderate", "action": action, "participant": boss.pid}
        err = await error_to(mod, msg)
        assert err["code"] == "forbidden" and "administrator" in err["message"]
    for action in ("mute", "remove", "ban", "unban", "lift_strike"):
        msg = {"type": "moderate", "action": action, "participant": bob.pid}
        err = await error_to(alice, msg)
        assert err["code"] == "forbidden" and "moderate grant" in err["message"]
    await asyncio.sleep(0.3)
    assert not bob.received("moderation_action") and not bob.received("bye")
    assert (await bob.request({"type": "ping"}))["type"] == "pong"


async def test_a_moderator_removes_a_participant(hub: Running) -> None:
    alice = await hub.joined("town", "alice")
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob")
    ack = await mod.request(
        {"type": "moderate", "action": "remove", "participant": bob.pid, "reason": "spam"}
    )
    assert ack["type"] == "moderation_action" and ack["action"] == "remove"
    assert ack["by"]["identity"] == "mod" and ack["participant"]["id"] == bob.pid
    told = await bob.expect("moderation_action", timeout=15)
    assert told["participant"]["identity"] == "bob" and told["reason"] == "spam"
    bye = await bob.expect("bye", timeout=15)
    assert bye["reason"] == "removed" and "moderator" in bye["message"]
    assert await bob.closed(15) == 4004
    seen = await alice.expect("moderation_action", timeout=15)
    assert "ref" not in seen and seen["action"] == "remove"
    left = await alice.expect("participant_left", timeout=15)
    assert left["participant"]["id"] == bob.pid and left["reason"] == "removed"
    assert await metric(hub.url, "commhub_moderator_actions_total", action="remove") == 1
    # removal is not a ban: bob may come back
    again = await hub.joined("town", "bob")
    assert again.pid != bob.pid


async def test_a_ban_holds_across_tokens_until_it_ends(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    alice = await hub.joined("town", "alice")
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob")
    ack = await mod.request(
        {"type": "moderate", "action": "ban", "participant": bob.pid, "duration": 4}
    )
    until = ack["until"]
    assert ack["action"] == "ban" and time.time() < until <= time.time() + 4.5
    assert (await bob.expect("moderation_action", timeout=15))["until"] == until
    assert await bob.closed(15) == 4004
    seen = await alice.expect("moderation_action", timeout=15)
    assert seen["participant"]["identity"] == "bob" and seen["until"] == until

    # another token for the same identity (other name, other grants): refused at join
    other = await hub.client("town", "bob", name="Robert", grants=["subscribe"])
    await other.send({"type": "join", "id": "j1"})
    err = await other.expect("error", timeout=15)
    assert err["code"] == "banned" and err["fatal"] and err["until"] == until
    assert await other.closed(15) == 4009
    # the admin API lists it; a room's admin of another room does not see it
    status, body = await call(http, "GET", f"{hub.url}/v1/bans?room=town", headers=admin_headers())
    assert status == 200 and [(b["identity"], b["by"]) for b in body["bans"]] == [("bob", "mod")]
    status, _ = await call(http, "GET", f"{hub.url}/v1/bans", headers=admin_headers("other"))
    assert status == 403
    # other rooms are not affected
    await hub.joined("elsewhere", "bob")

    await asyncio.sleep(max(0.0, until - time.time()) + 0.2)
    back = await hub.joined("town", "bob")
    assert back.joined is not None and back.joined["participant"]["identity"] == "bob"
    status, body = await call(http, "GET", f"{hub.url}/v1/bans?room=town", headers=admin_headers())
    assert body["bans"] == []


async def test_bans_through_the_admin_api_and_unban(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob")
    status, ban = await call(
        http, "POST", f"{hub.url}/v1/rooms/town/bans",
        json={"identity": "bob", "reason": "fraud"}, headers=admin_headers("town"),
    )  # fmt: skip
    assert status == 201 and ban["until"] is None and ban["by"] == "admin"
    told = await mod.expect("moderation_action", action="ban", timeout=15)
    assert told["by"] is None and told["until"] is None and told["reason"] == "fraud"
    assert await bob.closed(15) == 4004
    for bad, word in (
        ({"identity": ""}, "identity"),
        ({"identity": "carol", "duration": 0}, "duration"),
        ({"identity": "carol", "duration": True}, "duration"),
        ({"identity": "carol", "until": 5}, "unknown"),
        ({"identity": "carol", "reason": "x" * 1001}, "reason"),
    ):
        status, body = await call(
            http, "POST", f"{hub.url}/v1/rooms/town/bans", json=bad, headers=admin_headers()
        )
        assert status == 400 and word in body["message"], (bad, body)
    # a moderator bans an identity that is not here (for good), and it cannot come in
    ack = await mod.request({"type": "moderate", "action": "ban", "participant": "dave"})
    assert ack["participant"] == {"identity": "dave"} and ack["until"] is None
    dave = await hub.client("town", "dave")
    await dave.send({"type": "join"})
    err = await dave.expect("error", timeout=15)
    assert err["code"] == "banned" and err["until"] is None and "for good" in err["message"]
    # a moderator lifts it by identity; the room is told
    ack = await mod.request({"type": "moderate", "action": "unban", "participant": "bob"})
    assert ack["action"] == "unban" and ack["participant"] == {"identity": "bob"}
    await hub.joined("town", "bob")
    # and the admin API lifts one by id
    status, ban = await call(
        http, "POST", f"{hub.url}/v1/rooms/town/bans",
        json={"identity": "carol", "duration": 600}, headers=admin_headers(),
    )  # fmt: skip
    status, _ = await call(
        http, "DELETE", f"{hub.url}/v1/bans/{ban['id']}", headers=admin_headers()
    )
    assert status == 204
    assert (await mod.expect("moderation_action", action="unban", timeout=15))["by"] is None
    status, body = await call(
        http, "DELETE", f"{hub.url}/v1/bans/{ban['id']}", headers=admin_headers()
    )
    assert status == 404 and body["error"] == "ban_not_found"
    await hub.joined("town", "carol")


async def test_the_cli_lists_adds_and_lifts_bans_and_resolves_reports(
    start_hub: StartHub, tmp_path: Any
) -> None:
    hub = await start_hub(**LIGHT)
    alice = await hub.joined("town", "alice")
    bob = await hub.joined("town", "bob")
    reply = await alice.request({"type": "report", "participant": bob.pid, "reason": "spam"})
    env = clean_env(COMMHUB_SECRET=SECRET, COMMHUB_DATA_DIR=str(tmp_path / "cli"))
    url = ["--base-url", hub.url]

    def cli(*args: str) -> Any:
        return asyncio.to_thread(run_cli, *args, *url, env=env)

    out = await cli("bans", "add", "--room", "town", "--identity", "bob", "--duration", "1h")
    assert out.returncode == 0, out.stderr
    ban_id = out.stdout.strip()
    assert await bob.closed(15) == 4004
    out = await cli("bans", "list", "--room", "town")
    assert out.returncode == 0 and ban_id in out.stdout and "bob" in out.stdout
    out = await cli("reports", "list", "--status", "open")
    assert out.returncode == 0 and reply["report_id"] in out.stdout and "spam" in out.stdout
    out = await cli("reports", "show", reply["report_id"])
    assert out.returncode == 0 and json.loads(out.stdout)["subject"]["identity"] == "bob"
    out = await cli("reports", "resolve", reply["report_id"], "--resolution", "banned 1h")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "resolved"
    out = await cli("bans", "lift", ban_id)
    assert out.returncode == 0, out.stderr
    out = await cli("bans", "lift", ban_id)
    assert out.returncode == 1 and "ban_not_found" in out.stderr
    out = await cli("reports", "show", "RP_nope")
    assert out.returncode == 1 and "report_not_found" in out.stderr
    await hub.joined("town", "bob")


async def test_a_moderator_lifts_a_strike_mute(start_hub: StartHub) -> None:
    hub = await start_hub(captions=False, translation=False, moderation_strikes=2)
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob")
    err = await error_to(mod, {"type": "moderate", "action": "lift_strike", "participant": bob.pid})
    assert err["code"] == "wrong_state" and "not strike-muted" in err["message"]
    for text in ("shit", "shit again"):
        await bob.send({"type": "chat", "text": text})
    assert (await bob.expect("moderated", strikes=2, timeout=20))["muted"] is True
    err = await error_to(bob, {"type": "chat", "text": "hello"})
    assert err["code"] == "strike_muted"

    ack = await mod.request(
        {"type": "moderate", "action": "lift_strike", "participant": bob.pid, "reason": "ok now"}
    )
    assert ack["action"] == "lift_strike" and ack["participant"]["identity"] == "bob"
    told = await bob.expect("moderation_action", action="lift_strike", timeout=15)
    assert told["by"]["identity"] == "mod" and told["reason"] == "ok now"
    said = await bob.request({"type": "chat", "text": "hello"})
    assert said["type"] == "chat" and said["text"] == "hello"


async def test_a_muted_identity_stays_muted_when_it_joins_again(hub: Running) -> None:
    media = hub.server.app[MEDIA]
    mod = await hub.joined("town", "mod", grants=MOD)
    bob = await hub.joined("town", "bob")
    await mod.request(
        {"type": "moderate", "action": "mute", "participant": bob.pid, "kind": "video"}
    )
    assert [r["kind"] for r in media.suppressions("town", bob.pid)] == ["video"]
    await bob.close()
    again = await hub.joined("town", "bob")
    assert [r["kind"] for r in media.suppressions("town", again.pid)] == ["video"]
    await mod.request({"type": "moderate", "action": "unmute", "participant": again.pid})
    assert media.suppressions("town", again.pid) == []
    rejoined = await hub.joined("town", "bob")
    assert media.suppressions("town", rejoined.pid) == []


async def test_a_report_carries_the_imagery_filters_evidence_frames(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(imagery=True, **LIGHT)
    alice = await hub.joined("town", "alice")
    bob = await hub.joined("town", "bob")
    imagery = hub.server.app[IMAGERY]
    # a frame the filter flagged on bob's camera, saved (blurred) as imagery saves it
    picture = np.full((120, 160, 3), 200, dtype=np.uint8)
    entry = await asyncio.to_thread(
        imagery.evidence.save, picture, room="town", identity="bob", participant=bob.pid,
        track="cam", label="FEMALE_BREAST_EXPOSED", score=0.91, ts=time.time(),
    )  # fmt: skip
    imagery.evidence.add(entry)
    reply = await alice.request({"type": "report", "participant": bob.pid, "reason": "sexual"})
    url = f"{hub.url}/v1/reports/{reply['report_id']}"
    status, report = await call(http, "GET", url, headers=admin_headers())
    assert status == 200
    frames = report["evidence"]["frames"]
    assert [(f["identity"], f["label"], f["track"]) for f in frames] == [
        ("bob", "FEMALE_BREAST_EXPOSED", "cam")
    ]
    assert frames[0]["path"] == entry["path"]


async def test_a_room_with_a_muted_participant_stays_relayed(start_hub: StartHub) -> None:
    hub = await start_hub(**LIGHT)  # room_mode auto: two p2p-capable clients go p2p
    media = hub.server.app[MEDIA]
    p2p = {"capabilities": {"p2p": True}}
    mod = await hub.client("town", "mod", grants=MOD)
    await mod.join(**p2p)
    bob = await hub.client("town", "bob")
    await bob.join(**p2p)
    assert (await bob.expect("media_mode", timeout=15))["mode"] == "p2p"
    await mod.request({"type": "moderate", "action": "mute", "participant": bob.pid})
    assert (await bob.expect("media_mode", timeout=15))["mode"] == "sfu"
    assert media.mode("town") == "sfu"
    # everyone leaves; the muted identity comes back first, then a p2p-capable peer
    await bob.close()
    await mod.close()
    await wait_for(lambda: not getattr(hub.hub.rooms.get("town"), "participants", None))
    bob = await hub.client("town", "bob")
    await bob.join(**p2p)
    carol = await hub.client("town", "carol")
    await carol.join(**p2p)
    await asyncio.sleep(0.5)
    assert media.mode("town") == "sfu"
    assert all(m["mode"] == "sfu" for m in carol.received("media_mode"))
