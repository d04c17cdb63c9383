"""Desks against hostile and wrong input: every new message and HTTP call gets a precise
error, the hub keeps serving the others; the admin API and the command line."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from commhub import auth
from tests.conftest import SECRET, Running, StartHub, run_cli
from tests.helpers.desks import agent, agent_token, connect, make_desk, visit, visitor
from tests.helpers.http import admin_headers, call
from tests.wsclient import SignalClient

QUIET = {"captions": False, "translation": False}


async def refused(c: SignalClient, raw: str | dict[str, Any], ref: str = "x") -> dict[str, Any]:
    """Send one frame (a dict gets `id`); the error it earns."""
    if isinstance(raw, dict):
        await c.send({**raw, "id": ref})
        return await c.expect("error", ref=ref, timeout=10)
    await c.ws.send_str(raw)
    return await c.expect("error", timeout=10)


async def test_hostile_desk_messages_get_precise_errors(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(**QUIET)
    await make_desk(hub, http, "support")
    kim = await connect(hub, agent_token("support", "agent-kim", ["en"]))
    # before desk_join
    assert (await refused(kim, {"type": "desk_status", "status": "away"}))["code"] == "not_joined"
    assert (await refused(kim, {"type": "chat", "text": "hi"}))["code"] == "not_joined"
    await kim.request({"type": "desk_join"})
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    session = (await kim.expect("desk_assigned", timeout=10))["session"]
    cases: list[tuple[str | dict[str, Any], str, str]] = [
        ({"type": "desk_join"}, "already_joined", "already"),
        ({"type": "desk_status", "status": "sleeping"}, "invalid_message", "status"),
        ({"type": "desk_status"}, "invalid_message", "status"),
        ({"type": "desk_take", "ticket": "VT_../../etc"}, "invalid_message", "ticket"),
        ({"type": "desk_take", "ticket": "VT_" + "a" * 40}, "invalid_message", "ticket"),
        ({"type": "desk_take"}, "wrong_state", "assigns"),
        ({"type": "desk_end", "session": session, "outcome": "agent_lost"}, "invalid_message",
         "outcome"),
        ({"type": "desk_end", "session": session, "outcome": "resolved", "note": "x" * 2001},
         "invalid_message", "note"),
        ({"type": "desk_end", "session": session, "outcome": "resolved", "note": ""},
         "invalid_message", "note"),
        ({"type": "desk_end", "session": "DS_nosuchsession", "outcome": "resolved"},
         "unknown_session", "session"),
        ({"type": "desk_end", "session": session, "outcome": "resolved", "extra": 1},
         "invalid_message", "extra"),
        ({"type": "desk_transfer", "session": session, "desk": "Not A Desk"}, "invalid_message",
         "desk"),
        ({"type": "desk_transfer", "session": session, "desk": "nowhere"}, "unknown_desk",
         "nowhere"),
        ({"type": "desk_transfer", "session": session, "agent": "agent-ghost"}, "unknown_agent",
         "agent-ghost"),
        ({"type": "desk_transfer", "session": session, "agent": "a" * 129}, "invalid_message",
         "agent"),
        ({"type": "desk_add", "session": session, "agent": "agent-kim"}, "unknown_agent",
         "agent-kim"),
        ({"type": "desk_add", "session": "DS_x"}, "invalid_message", "session"),
        ({"type": "desk_nonsense"}, "unknown_type", "desk_nonsense"),
        ('{"type": "desk_end", "session": "' + session + '", "outcome": "resolved", '
         '"note": "\\ud800"}', "invalid_message", "surrogate"),
        ('{"type": "desk_transfer", "session": "' + session + '", "note": '
         + '{"a": ' * 20 + "1" + "}" * 20 + "}", "invalid_message", "nested"),
        ('{"type": "desk_take", "ticket": ' + "[" * 40 + "]" * 40 + "}", "invalid_message",
         "nested"),
    ]  # fmt: skip
    for i, (msg, code, words) in enumerate(cases):
        err = await refused(kim, msg, ref=f"c{i}")
        assert err["code"] == code, (msg, err)
        assert words in err["message"], (msg, err)
        assert not err.get("fatal")
    big = json.dumps({"type": "desk_end", "session": session, "outcome": "resolved",
                      "note": "x" * 70_000})  # fmt: skip
    assert (await refused(kim, big))["code"] == "message_too_large"
    # after all that the session is intact and the desk works
    done = await kim.request({"type": "desk_end", "session": session, "outcome": "resolved",
                              "note": "ok \U0001f600 ﷐ fine"})  # fmt: skip
    assert done["outcome"] == "resolved"
    await ana.expect("desk_ended", timeout=10)


async def test_desk_messages_need_a_desk_token_and_desk_tokens_join_no_room(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(**QUIET)
    await make_desk(hub, http, "support")
    plain = await hub.client("lobby", "alice")
    err = await refused(plain, {"type": "desk_join"})
    assert err["code"] == "forbidden" and "desk token" in err["message"]
    await plain.join()
    assert (await refused(plain, {"type": "desk_status", "status": "away"}))["code"] == "forbidden"
    # a hand-made token whose room does not match its desk claim
    odd = auth.issue(SECRET, room="lobby", identity="mallory",
                     desk=auth.DeskClaim("support", "agent", None, ("en",)))  # fmt: skip
    c = await connect(hub, odd)
    assert (await refused(c, {"type": "desk_join"}))["code"] == "forbidden"
    kim = await connect(hub, agent_token("support", "agent-kim", ["en"]))
    err = await refused(kim, {"type": "join"})
    assert err["code"] == "forbidden" and "desk_join" in err["message"]
    # a desk that does not exist
    ghost = await connect(hub, agent_token("ghost-desk", "agent-kim", ["en"]))
    assert (await refused(ghost, {"type": "desk_join"}))["code"] == "unknown_desk"


async def test_the_visit_endpoint_refuses_bad_visitors_precisely(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(**QUIET)
    await make_desk(hub, http, "support", topics=["tax", "residence"])
    url = f"{hub.url}/v1/desks/support/visit"
    cases: list[tuple[Any, int, str, str]] = [
        ({"name": "", "speak": "en"}, 400, "invalid_request", "name"),
        ({"name": "x" * 81, "speak": "en"}, 400, "invalid_request", "name"),
        ({"name": "a\u0007b", "speak": "en"}, 400, "invalid_request", "control"),
        ({"name": "Ana", "speak": "english"}, 400, "invalid_request", "speak"),
        ({"name": "Ana", "speak": "es", "read": 3}, 400, "invalid_request", "read"),
        ({"name": "Ana", "speak": "es", "topic": "visa"}, 400, "invalid_request", "topic"),
        ({"name": "Ana", "speak": "es", "admin": True}, 400, "invalid_request", "unknown"),
        ([1, 2], 400, "invalid_request", "object"),
    ]
    for body, status, code, words in cases:
        got, answer = await call(http, "POST", url, json=body)
        assert (got, answer["error"]) == (status, code), (body, answer)
        assert words in answer["message"], (body, answer)
    raw = '{"name": "\\ud800", "speak": "en"}'
    got, answer = await call(http, "POST", url, data=raw,
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert got == 400 and "surrogate" in answer["message"]
    got, answer = await call(http, "POST", url, data="{not json")
    assert got == 400 and answer["error"] == "bad_json"
    got, answer = await call(http, "POST", url, data="x" * 100_000)
    assert got == 413
    for name in ("nowhere", "BAD NAME", "a" * 70):
        got, answer = await visit(hub, http, name, "Ana", "es")
        assert got == 404 and answer["error"] == "desk_not_found"
    # a good visitor still gets in, with a token that carries nothing more than the queue
    got, answer = await visit(hub, http, "support", "  Ana María  ", "es", read="en", topic="tax")
    assert got == 200 and answer["desk"] == "support"
    claims = auth.verify(SECRET, answer["token"])
    assert claims.name == "Ana María" and claims.grants == frozenset()
    assert claims.desk == auth.DeskClaim("support", "visitor", "tax")
    assert claims.room == "desk.support" and claims.identity == answer["identity"]
    assert claims.expires - answer["expires_at"] < 2


async def test_admin_api_lists_desks_queues_and_agents(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(**QUIET)
    made = await make_desk(
        hub, http, "support-foreigners", title="Support centre for foreigners",
        languages=["ko", "en", "es"], topics=["tax", "residence", "health-insurance"],
        hours="mon-fri 09:00-18:00; sat 10:00-13:00", timezone="Asia/Seoul", max_queue=50,
        assign="manual",
    )  # fmt: skip
    assert made["hours"] == "mon-fri 09:00-18:00; sat 10:00-13:00" and made["max_queue"] == 50
    base, admin = f"{hub.url}/v1/admin/desks", admin_headers()
    bad_specs = [
        ({"name": "Bad Name"}, "name"),
        ({"name": "x", "hours": "someday 9-5"}, "hours"),
        ({"name": "x", "hours": "mon 18:00-09:00"}, "end must be after"),
        ({"name": "x", "timezone": "Mars/Olympus"}, "timezone"),
        ({"name": "x", "languages": ["klingon!"]}, "languages"),
        ({"name": "x", "max_queue": 0}, "max_queue"),
        ({"name": "x", "assign": "random"}, "assign"),
        ({"name": "x", "title": "a\nb"}, "control"),
        ({"name": "x", "topics": ["x" * 41]}, "topics"),
        ({"name": "x", "surprise": 1}, "unknown"),
    ]
    for spec, words in bad_specs:
        status, body = await call(http, "POST", base, json=spec, headers=admin)
        assert status == 400 and words in body["message"], (spec, body)
    status, body = await call(http, "POST", base, json={"name": "support-foreigners"},
                              headers=admin)  # fmt: skip
    assert status == 409 and body["error"] == "desk_exists"
    # a room's admin (not every room's) may not manage desks
    status, body = await call(http, "GET", base, headers=admin_headers("lobby"))
    assert status == 403
    status, body = await call(http, "GET", base)
    assert status == 401 and body["error"] == "token_missing"

    await call(http, "PATCH", f"{base}/support-foreigners", json={"hours": None}, headers=admin)
    kim, _ = await agent(hub, "support-foreigners", "agent-kim", ["ko", "en"])
    await visitor(hub, http, "support-foreigners", "Ana", "es", topic="residence")
    status, listed = await call(http, "GET", base, headers=admin)
    assert status == 200
    (entry,) = listed["desks"]
    assert entry["name"] == "support-foreigners" and entry["queue_length"] == 1
    assert entry["agents_online"] == 1 and entry["hours"] is None
    status, shown = await call(http, "GET", f"{base}/support-foreigners", headers=admin)
    assert shown["queue"][0]["name"] == "Ana" and shown["queue"][0]["topic"] == "residence"
    assert shown["agents"][0]["identity"] == "agent-kim" and shown["sessions"] == []
    status, minted = await call(http, "POST", f"{base}/support-foreigners/agent-token",
                                json={"identity": "agent-lee", "languages": ["es"]},
                                headers=admin)  # fmt: skip
    assert status == 201
    claims = auth.verify(SECRET, minted["token"])
    assert claims.desk == auth.DeskClaim("support-foreigners", "agent", None, ("es",))
    status, body = await call(http, "PATCH", f"{base}/support-foreigners",
                              json={"name": "renamed"}, headers=admin)  # fmt: skip
    assert status == 400
    # deleting: waiting visitors are told, agents signed out
    ana = hub.clients[-1]
    status, _ = await call(http, "DELETE", f"{base}/support-foreigners", headers=admin)
    assert status == 204
    gone = await ana.expect("desk_unavailable", timeout=10)
    assert gone["reason"] == "deleted"
    assert await kim.closed(timeout=10) == 4005
    status, body = await call(http, "GET", f"{base}/support-foreigners", headers=admin)
    assert status == 404 and body["error"] == "desk_not_found"


async def test_cli_desks_and_agent_tokens(tmp_path: Any) -> None:
    env = {"COMMHUB_DATA_DIR": str(tmp_path / "data"), "COMMHUB_SECRET": SECRET,
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    made = run_cli("desk", "create", "support-foreigners", "--name",
                   "Support centre for foreigners", "--languages", "ko,en,es", "--topics",
                   "tax,residence,health-insurance", "--hours", "mon-fri 09:00-18:00",
                   "--timezone", "Asia/Seoul", "--max-queue", "30", "--assign", "manual",
                   env=env)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip().endswith("/desk/support-foreigners")
    listed = run_cli("desk", "list", env=env)
    assert "support-foreigners\tSupport centre for foreigners\tko,en,es\tmanual" in listed.stdout
    shown = run_cli("desk", "show", "support-foreigners", env=env)
    spec = json.loads(shown.stdout[: shown.stdout.rindex("}") + 1])
    assert spec["topics"] == ["tax", "residence", "health-insurance"] and spec["max_queue"] == 30
    token = run_cli("token", "--desk", "support-foreigners", "--agent", "--identity", "minji",
                    "--name", "Minji", "--speak", "ko", "--languages", "ko,en",
                    env=env)  # fmt: skip
    assert token.returncode == 0, token.stderr
    claims = auth.verify(SECRET, token.stdout.strip())
    assert claims.desk == auth.DeskClaim("support-foreigners", "agent", None, ("ko", "en"))
    assert claims.role == "agent" and claims.name == "Minji"
    assert run_cli("token", "--desk", "nowhere", "--agent", "--identity", "x",
                   env=env).returncode == 2  # fmt: skip
    assert run_cli("token", "--desk", "support-foreigners", "--identity", "x",
                   env=env).returncode == 2  # fmt: skip
    bad = run_cli("desk", "create", "x", "--hours", "every day", env=env)
    assert bad.returncode == 2 and "hours" in bad.stderr
    assert run_cli("desk", "update", "support-foreigners", "--assign", "auto",
                   env=env).returncode == 0  # fmt: skip
    assert "\tauto\t" in run_cli("desk", "list", env=env).stdout
    assert run_cli("desk", "delete", "support-foreigners", env=env).returncode == 0
    assert run_cli("desk", "delete", "support-foreigners", env=env).returncode == 1


async def test_a_desk_made_by_the_cli_serves_a_running_hub(
    start_hub: StartHub, http: aiohttp.ClientSession, settings: Any
) -> None:
    hub: Running = await start_hub(**QUIET)
    env = {"COMMHUB_DATA_DIR": str(settings.data_dir), "COMMHUB_SECRET": SECRET,
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    assert run_cli("desk", "create", "late-desk", env=env).returncode == 0
    status, shown = await call(http, "GET", f"{hub.url}/v1/desks/late-desk")
    assert status == 200 and shown["open"] is True and shown["estimated_wait"] is None
    await visitor(hub, http, "late-desk", "Ana", "es")
