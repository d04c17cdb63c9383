"""Invites over real HTTP on a real hub: mint, show, redeem, expire, revoke; the CLI's invites
and the demo link of `serve` on a hub running as its own process."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import aiohttp

from commhub import auth
from commhub.config import Settings
from tests.conftest import SECRET, LoopWatch, Running, StartHub, run_cli
from tests.helpers.http import admin_headers, call
from tests.helpers.hubproc import HubProcess
from tests.wsclient import SignalClient


async def mint(hub: Running, http: aiohttp.ClientSession, **spec: Any) -> dict[str, Any]:
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/invites", json=spec, headers=admin_headers(spec["room"])
    )
    assert status == 201, body
    return dict(body)


async def redeem(
    hub: Running, http: aiohttp.ClientSession, code: str, **guest: Any
) -> tuple[int, Any]:
    body = {"name": "Minji", "speak": "ko", "read": "en", **guest}
    return await call(http, "POST", f"{hub.url}/v1/invites/{code}/redeem", json=body)


async def test_single_use_invite_joins_once(
    hub: Running, http: aiohttp.ClientSession, loop_watch: LoopWatch
) -> None:
    made = await mint(hub, http, room="desk-1", uses=1)
    assert set(made) == {"code", "room", "url", "expires_at", "uses_left"}
    assert made["room"] == "desk-1" and made["uses_left"] == 1
    assert made["url"] == f"/join/{made['code']}" and len(made["code"]) >= 22

    status, shown = await call(http, "GET", f"{hub.url}/v1/invites/{made['code']}")
    assert status == 200
    assert shown == {"room": "desk-1", "expires_at": made["expires_at"], "uses_left": 1}

    status, got = await redeem(hub, http, made["code"])
    assert status == 200, got
    assert set(got) == {"token", "room", "identity", "expires_at"}
    assert got["room"] == "desk-1" and got["identity"].startswith("guest-")
    claims = auth.verify(SECRET, got["token"])
    assert (claims.room, claims.identity, claims.name) == ("desk-1", got["identity"], "Minji")
    assert (claims.speak, claims.read, claims.role) == ("ko", "en", "guest")
    assert claims.grants == frozenset(auth.DEFAULT_GRANTS)

    # the token joins the invite's room, with the chosen name, and no other room
    c = await SignalClient.connect(hub.url, got["token"])
    hub.clients.append(c)
    joined = await c.join()
    assert joined["room"]["name"] == "desk-1"
    assert joined["participant"]["name"] == "Minji"
    assert joined["participant"]["identity"] == got["identity"]
    status, refused = await call(
        http, "GET", f"{hub.url}/v1/signal", params={"access_token": got["token"], "room": "desk-2"}
    )
    assert (status, refused["error"]) == (401, "token_wrong_room")

    # used once: the second person is refused, and the invite says why
    status, body = await redeem(hub, http, made["code"], name="Someone else")
    assert (status, body["error"]) == (410, "invite_used_up")
    status, body = await call(http, "GET", f"{hub.url}/v1/invites/{made['code']}")
    assert (status, body["error"]) == (410, "invite_used_up")


async def test_unlimited_invite_gives_each_guest_an_identity(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    made = await mint(hub, http, room="lobby")
    assert made["uses_left"] is None
    identities = set()
    for name in ("Ana", "Bo", "Chul"):
        status, got = await redeem(hub, http, made["code"], name=name, speak="es", read="es")
        assert status == 200
        identities.add(got["identity"])
    assert len(identities) == 3


async def test_the_last_use_goes_to_exactly_one_of_concurrent_redeems(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    made = await mint(hub, http, room="lobby", uses=2)
    results = await asyncio.gather(
        *(redeem(hub, http, made["code"], name=f"guest {i}") for i in range(6))
    )
    statuses = sorted(s for s, _ in results)
    assert statuses == [200, 200, 410, 410, 410, 410]
    assert {b["error"] for s, b in results if s == 410} == {"invite_used_up"}


async def test_expired_invite_is_refused(hub: Running, http: aiohttp.ClientSession) -> None:
    made = await mint(hub, http, room="lobby", ttl=0.3)
    await asyncio.sleep(0.5)
    status, body = await call(http, "GET", f"{hub.url}/v1/invites/{made['code']}")
    assert (status, body["error"]) == (410, "invite_expired")
    assert body["message"]
    status, body = await redeem(hub, http, made["code"])
    assert (status, body["error"]) == (410, "invite_expired")


async def test_revoked_invite_stops_working(hub: Running, http: aiohttp.ClientSession) -> None:
    made = await mint(hub, http, room="desk-1", uses=5)
    status, listed = await call(http, "GET", f"{hub.url}/v1/admin/invites", headers=admin_headers())
    assert status == 200
    (entry,) = [i for i in listed["invites"] if i["code"] == made["code"]]
    assert entry["status"] == "active" and entry["uses"] == 5 and entry["room"] == "desk-1"

    url = f"{hub.url}/v1/admin/invites/{made['code']}"
    async with http.delete(url, headers=admin_headers("desk-1")) as resp:
        assert resp.status == 204
    status, body = await redeem(hub, http, made["code"])
    assert (status, body["error"]) == (410, "invite_revoked")
    status, body = await call(http, "GET", f"{hub.url}/v1/invites/{made['code']}")
    assert (status, body["error"]) == (410, "invite_revoked")
    status, listed = await call(
        http, "GET", f"{hub.url}/v1/admin/invites?room=desk-1", headers=admin_headers("desk-1")
    )
    assert [i["status"] for i in listed["invites"]] == ["revoked"]
    status, body = await call(http, "DELETE", f"{hub.url}/v1/admin/invites/{'x' * 22}",
                              headers=admin_headers())  # fmt: skip
    assert (status, body["error"]) == (404, "invite_not_found")


async def test_grants_never_exceed_the_invite(hub: Running, http: aiohttp.ClientSession) -> None:
    made = await mint(hub, http, room="lobby", role="customer", grants=["subscribe"])
    status, got = await redeem(hub, http, made["code"])
    assert status == 200
    claims = auth.verify(SECRET, got["token"])
    assert claims.grants == frozenset({"subscribe"}) and claims.role == "customer"
    # the guest cannot ask for more in its redeem
    status, body = await redeem(hub, http, made["code"], grants=["admin"])
    assert (status, body["error"]) == (400, "invalid_request")
    # and the token does what the invite allows, no more: no chat grant, no chat
    c = await SignalClient.connect(hub.url, got["token"])
    hub.clients.append(c)
    await c.join()
    await c.send({"type": "chat", "id": "c1", "text": "hello"})
    assert (await c.expect("error", ref="c1"))["code"] == "forbidden"
    # an invite never carries admin
    for bad in ({"grants": ["admin"]}, {"role": "admin"}):
        status, body = await call(
            http, "POST", f"{hub.url}/v1/admin/invites", json={"room": "lobby", **bad},
            headers=admin_headers(),
        )  # fmt: skip
        assert (status, body["error"]) == (400, "invalid_request"), bad


async def test_admin_refusals(hub: Running, http: aiohttp.ClientSession) -> None:
    url = f"{hub.url}/v1/admin/invites"
    status, body = await call(http, "POST", url, json={"room": "desk-1"})
    assert (status, body["error"]) == (401, "token_missing")
    user = auth.issue(SECRET, room="desk-1", identity="u")
    status, body = await call(http, "POST", url, json={"room": "desk-1"},
                              headers={"Authorization": f"Bearer {user}"})  # fmt: skip
    assert (status, body["error"]) == (403, "forbidden")
    # a room's admin: its own room only
    status, _ = await call(
        http, "POST", url, json={"room": "desk-2"}, headers=admin_headers("desk-1")
    )
    assert status == 403
    status, _ = await call(http, "GET", url, headers=admin_headers("desk-1"))
    assert status == 403  # listing every room's invites needs the any-room admin
    other = await mint(hub, http, room="desk-2")
    status, _ = await call(
        http, "DELETE", f"{url}/{other['code']}", headers=admin_headers("desk-1")
    )  # fmt: skip
    assert status == 403
    status, _ = await call(http, "GET", f"{hub.url}/v1/invites/{other['code']}")
    assert status == 200  # still valid
    for bad in (
        {"room": "no spaces allowed"},
        {"room": "lobby", "ttl": 0},
        {"room": "lobby", "ttl": 10 * 86400},  # beyond admin_token_max_ttl
        {"room": "lobby", "uses": 0},
        {"room": "lobby", "uses": True},
        {"room": "lobby", "media_mode": "mesh"},
        {"room": "lobby", "colour": "red"},
    ):
        status, body = await call(http, "POST", url, json=bad, headers=admin_headers())
        assert (status, body["error"]) == (400, "invalid_request"), bad
    status, body = await call(http, "POST", url, data=b"{nope", headers=admin_headers())
    assert (status, body["error"]) == (400, "bad_json")


async def test_redeem_refuses_bad_bodies_and_unknown_codes(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    made = await mint(hub, http, room="lobby", uses=1)
    url = f"{hub.url}/v1/invites/{made['code']}/redeem"
    for bad in (
        {"speak": "ko"},  # no name
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 81},
        {"name": "bell\x07"},
        {"name": 7},
        {"name": "Minji", "speak": "not a language"},
        {"name": "Minji", "room": "desk-2"},
        ["Minji"],
    ):
        status, body = await call(http, "POST", url, json=bad)
        assert (status, body["error"]) == (400, "invalid_request"), bad
    status, body = await call(http, "POST", url, data=b"not json")
    assert (status, body["error"]) == (400, "bad_json")
    nested = b'{"name": ' + b"[" * 32000 + b"]" * 32000 + b"}"
    status, body = await call(http, "POST", url, data=nested)
    assert (status, body["error"]) == (400, "invalid_request")
    status, body = await call(http, "POST", url, data=b'{"name": "Eve \\ud800"}')
    assert (status, body["error"]) == (400, "invalid_request")
    # nothing above used the invite up
    status, shown = await call(http, "GET", f"{hub.url}/v1/invites/{made['code']}")
    assert (status, shown["uses_left"]) == (200, 1)
    for code in ("A" * 22, "short", "not a code at all, no"):
        status, body = await call(http, "GET", f"{hub.url}/v1/invites/{code}")
        assert (status, body["error"]) == (404, "invite_not_found"), code
        status, body = await redeem(hub, http, code)
        assert (status, body["error"]) == (404, "invite_not_found"), code


async def test_public_invite_calls_are_rate_limited_per_address(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    statuses = []
    for _ in range(30):
        async with http.get(f"{hub.url}/v1/invites/{'B' * 22}") as resp:
            statuses.append(resp.status)
            if resp.status == 429:
                assert int(resp.headers["Retry-After"]) >= 1
                assert (await resp.json())["error"] == "rate_limited"
    assert statuses[0] == 404 and statuses[-1] == 429
    # the hub keeps serving everything else
    async with http.get(f"{hub.url}/healthz") as resp:
        assert resp.status == 200


async def test_join_link_serves_the_page_and_the_favicon_exists(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    made = await mint(hub, http, room="lobby")
    async with http.get(hub.url + made["url"]) as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "<html" in await resp.text()
    async with http.get(f"{hub.url}/favicon.ico") as resp:
        assert resp.status == 200
        icon = await resp.read()
    assert icon[:4] == b"\x00\x00\x01\x00"  # an ICO header


async def test_cli_invite_is_redeemable_on_the_running_hub(
    settings: Settings, start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub()
    proc = await asyncio.to_thread(
        run_cli, "invite", "--room", "desk-7", "--uses", "2", "--ttl", "1h",
        "--data-dir", str(settings.data_dir), "--base-url", hub.url,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    link = proc.stdout.strip()
    assert link.startswith(f"{hub.url}/join/") and "\n" not in link
    assert "2 use(s)" in proc.stderr
    code = link.rsplit("/", 1)[1]
    status, shown = await call(http, "GET", f"{hub.url}/v1/invites/{code}")
    assert (status, shown["room"], shown["uses_left"]) == (200, "desk-7", 2)
    status, got = await redeem(hub, http, code)
    assert status == 200 and got["room"] == "desk-7"
    bad = await asyncio.to_thread(
        run_cli, "invite", "--room", "desk 7", "--data-dir", str(settings.data_dir)
    )
    assert bad.returncode == 2 and "room" in bad.stderr


async def test_serve_prints_a_demo_link_and_hints_that_work(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    hub = HubProcess(
        tmp_path / "data", 0, {"COMMHUB_CAPTIONS": "false", "COMMHUB_TRANSLATION": "false"},
        "--demo-room", "demo",
    )  # fmt: skip
    try:
        await hub.start()
        async with asyncio.timeout(30):
            while not any(line.startswith("invite someone") for line in hub.lines):
                await asyncio.sleep(0.05)
        demo = next(line for line in hub.lines if "join the demo room" in line)
        link = demo.rsplit(" ", 1)[1]
        assert link.startswith(f"{hub.url}/join/")
        async with http.get(link) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
        status, shown = await call(http, "GET", f"{hub.url}/v1/invites/{link.rsplit('/', 1)[1]}")
        assert (status, shown["room"], shown["uses_left"]) == (200, "demo", None)

        # "get a token" as printed (the same data dir, so the same generated secret)
        hint = next(line for line in hub.lines if line.startswith("get a token"))
        argv = shlex.split(hint.split(": ", 1)[1])
        assert argv[0].endswith("commhub") and "--data-dir" in argv
        proc = await asyncio.to_thread(run_cli, *argv[1:])
        assert proc.returncode == 0, proc.stderr
        c = await SignalClient.connect(hub.url, proc.stdout.strip())
        try:
            assert (await c.join())["room"]["name"] == "lobby"
        finally:
            await c.close()
        hint = next(line for line in hub.lines if line.startswith("invite someone"))
        proc = await asyncio.to_thread(run_cli, *shlex.split(hint.split(": ", 1)[1])[1:])
        assert proc.returncode == 0, proc.stderr
        link = proc.stdout.strip()
        assert link.startswith(f"{hub.url}/join/")
        status, _ = await call(http, "GET", link.replace("/join/", "/v1/invites/"))
        assert status == 200
    finally:
        await hub.close()
