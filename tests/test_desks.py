"""Service desks over real sockets on a real hub: visitors from the public link, agents with
agent tokens, SDK WebSocket clients; queue positions, routing, grace periods, transfers,
privacy, full and closed desks, an agent lost mid-session."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp

from commhub import auth
from commhub.desks.service import channel
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.desks import (
    agent,
    connect,
    make_desk,
    room_client,
    visit,
    visitor,
    visitor_token,
)
from tests.helpers.http import admin_headers, call
from tests.helpers.metrics import metric
from tests.helpers.wait import barrier, wait_for

QUIET = {"captions": False, "translation": False}


class Events:
    """An inbox on a desk's events channel of the hub's bus (what other processes would see)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def deliver(self, data: str) -> None:
        import json

        self.seen.append(json.loads(data))

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.seen]


def listen(hub: Running, desk: str) -> Events:
    events = Events()
    hub.hub.bus.attach(channel(desk, "events"), "test-listener", events)
    return events


async def state_after(console: Any, kind: str) -> dict[str, Any]:
    """The console's next desk_state caused by an event of `kind`."""
    while True:
        state: dict[str, Any] = await console.expect("desk_state", timeout=10)
        if state.get("event", {}).get("kind") == kind:
            return state


async def start(start_hub: StartHub, **settings: Any) -> Running:
    return await start_hub(**{**QUIET, **settings})


async def test_positions_update_as_agents_take_visitors(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", title="Support centre", languages=["ko", "en", "es"],
                    topics=["tax", "residence"])  # fmt: skip
    events = listen(hub, "support")
    ana, w1 = await visitor(hub, http, "support", "Ana", "es", topic="residence")
    minho, w2 = await visitor(hub, http, "support", "Minho", "ko")
    john, w3 = await visitor(hub, http, "support", "John", "en", read="en")
    assert [w["position"] for w in (w1, w2, w3)] == [1, 2, 3]
    assert all(w["estimated_wait"] is None and w["agents_online"] == 0 for w in (w1, w2, w3))
    assert w1["desk"] == {"name": "support", "title": "Support centre"}

    a1, state = await agent(hub, "support", "agent-kim", ["ko", "en"])
    # the console sees the queue as it was when it signed in, then the assignment
    assert state["you"] == {"identity": "agent-kim", "status": "available"}
    a1_assigned = await a1.expect("desk_assigned", timeout=10)
    assert (
        a1_assigned["visitor"]["name"] == "Ana" and a1_assigned["visitor"]["topic"] == "residence"
    )
    ana_assigned = await ana.expect("desk_assigned", timeout=10)
    assert ana_assigned["session"] == a1_assigned["session"]
    assert ana_assigned["room"] == a1_assigned["room"] and ana_assigned["with"] == {
        "name": "agent-kim"
    }
    assert "visitor" not in ana_assigned and ana_assigned["token"] != a1_assigned["token"]
    # the others moved up, with an estimate now that an agent is signed in
    w = await minho.expect("desk_waiting", position=1, timeout=10)
    assert w["agents_online"] == 1 and w["estimated_wait"] == 300.0
    assert (await john.expect("desk_waiting", position=2, timeout=10))["estimated_wait"] == 600.0

    # the session room: the pair only, private, with the tokens the desk minted
    room = ana_assigned["room"]
    assert room.startswith("desk-support-") and len(room) >= len("desk-support-") + 22
    ana_room = await room_client(hub, ana_assigned)
    kim_room = await room_client(hub, a1_assigned)
    await kim_room.send({"type": "chat", "text": "Buenos días"})
    got = await ana_room.expect("chat", timeout=10)
    assert got["text"] == "Buenos días" and got["from"]["name"] == "agent-kim"

    a2, _ = await agent(hub, "support", "agent-lee", ["en"])
    assert (await a2.expect("desk_assigned", timeout=10))["visitor"]["name"] == "Minho"
    await minho.expect("desk_assigned", timeout=10)
    assert (await john.expect("desk_waiting", position=1, timeout=10))["agents_online"] == 2

    # ending a session: the visitor is told (no outcome, no note), the room closes
    ended = await a1.request(
        {"type": "desk_end", "session": a1_assigned["session"], "outcome": "resolved",
         "note": "residence card renewal explained"}, timeout=10,
    )  # fmt: skip
    assert ended["type"] == "desk_ended" and ended["outcome"] == "resolved"
    v_end = await ana.expect("desk_ended", timeout=10)
    assert v_end["session"] == a1_assigned["session"] and "outcome" not in v_end
    assert await ana_room.closed(timeout=10) == 4005
    # the ended session's room stays shut, though its tokens are still valid
    again = await connect(hub, ana_assigned["token"])
    await again.send({"type": "join", "id": "j"})
    refused = await again.expect("error", ref="j", timeout=10)
    assert refused["code"] == "forbidden" and "ended" in refused["message"]
    # agent-kim is free again: John is next
    assert (await a1.expect("desk_assigned", timeout=10))["visitor"]["name"] == "John"
    await john.expect("desk_assigned", timeout=10)
    await wait_for(lambda: "ended" in events.kinds(), what="the ended event")
    ended_event = next(e for e in events.seen if e["kind"] == "ended")
    assert ended_event["outcome"] == "resolved" and ended_event["note"].startswith("residence")
    assert events.kinds()[:3] == ["queued", "queued", "queued"]
    assert events.kinds().count("assigned") == 3

    assert (
        await metric(hub.url, "commhub_desk_sessions_total", desk="support", outcome="resolved")
        == 1
    )
    assert await metric(hub.url, "commhub_desk_queue_length", desk="support") == 0
    assert await metric(hub.url, "commhub_desk_wait_seconds_count", desk="support") == 3
    assert await metric(hub.url, "commhub_desk_agent_occupancy", desk="support") == 1


async def test_routing_prefers_an_agent_who_speaks_the_visitors_language(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", languages=["ko", "en", "es"])
    en, _ = await agent(hub, "support", "agent-en", ["en"])  # idle longest
    es, _ = await agent(hub, "support", "agent-es", ["es"])
    ko_agent, _ = await agent(hub, "support", "agent-ko", ["ko", "en"])
    carmen, _ = await visitor(hub, http, "support", "Carmen", "es")
    assert (await es.expect("desk_assigned", timeout=10))["visitor"]["name"] == "Carmen"
    await carmen.expect("desk_assigned", timeout=10)
    await visitor(hub, http, "support", "Jisoo", "ko")
    assert (await ko_agent.expect("desk_assigned", timeout=10))["visitor"]["name"] == "Jisoo"
    # nobody left speaks Arabic: any agent (the one idle longest)
    await visitor(hub, http, "support", "Omar", "ar", read="en")
    assert (await en.expect("desk_assigned", timeout=10))["visitor"]["name"] == "Omar"
    await barrier(en, es, ko_agent)
    assert len(en.received("desk_assigned")) == 1 and len(es.received("desk_assigned")) == 1


async def test_a_dropped_visitor_regains_its_place_within_the_grace_period(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub, desk_grace=60.0)
    await make_desk(hub, http, "support", assign="manual")
    token = await visitor_token(hub, http, "support", "Ana", "es")
    ana = await connect(hub, token)
    assert (await ana.request({"type": "desk_join"}))["position"] == 1
    bob, w = await visitor(hub, http, "support", "Bob", "en")
    assert w["position"] == 2
    console, _ = await agent(hub, "support", "agent-kim", ["en"])
    await ana.close()
    state = await state_after(console, "dropped")
    assert [e["connected"] for e in state["queue"]] == [False, True]
    await barrier(bob)
    assert bob.received("desk_waiting")[-1]["position"] == 2  # the place is kept
    # manual take next skips the disconnected one, without losing its place
    taken = await console.request({"type": "desk_take"}, timeout=10)
    assert taken["type"] == "desk_assigned" and taken["visitor"]["name"] == "Bob"

    back = await connect(hub, token)
    again = await back.request({"type": "desk_join"}, timeout=10)
    assert again["position"] == 1 and again["notice"]["code"] == "regained"
    state = await state_after(console, "regained")
    assert state["queue"][0]["connected"] is True and state["queue"][0]["name"] == "Ana"


async def test_a_dropped_visitor_loses_its_place_after_the_grace_period(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub, desk_grace=0.5)
    await make_desk(hub, http, "support", assign="manual")
    events = listen(hub, "support")
    token = await visitor_token(hub, http, "support", "Ana", "es")
    ana = await connect(hub, token)
    await ana.request({"type": "desk_join"})
    bob, _ = await visitor(hub, http, "support", "Bob", "en")
    await ana.close()
    assert (await bob.expect("desk_waiting", position=1, timeout=10))["position"] == 1
    assert "dropped" in events.kinds() and "abandoned" in events.kinds()
    back = await connect(hub, token)
    again = await back.request({"type": "desk_join"}, timeout=10)
    assert again["position"] == 2 and "notice" not in again  # a newcomer now


async def test_a_transfer_carries_the_transcript(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", languages=["ko", "es"])
    await make_desk(hub, http, "health-insurance", title="National Health Insurance")
    kim, _ = await agent(hub, "support", "agent-kim", ["ko", "es"])
    park, _ = await agent(hub, "health-insurance", "agent-park", ["ko", "es"])
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    first = await kim.expect("desk_assigned", timeout=10)
    ana_first = await ana.expect("desk_assigned", timeout=10)
    ana_room, kim_room = await room_client(hub, ana_first), await room_client(hub, first)
    await ana_room.request({"type": "chat", "text": "Necesito el seguro de salud"})
    await kim_room.request({"type": "chat", "text": "Le paso con el seguro nacional"})

    reply = await kim.request(
        {"type": "desk_transfer", "session": first["session"], "desk": "health-insurance",
         "note": "NHIS enrolment"}, timeout=10,
    )  # fmt: skip
    assert reply["type"] == "desk_ended" and reply["outcome"] == "transferred"
    notice = await ana.expect("desk_waiting", timeout=10)
    assert notice["notice"]["code"] == "transferred" and notice["position"] == 1
    assert notice["desk"]["name"] == "health-insurance"
    assert await ana_room.closed(timeout=10) == 4005
    second = await park.expect("desk_assigned", timeout=10)
    assert second["visitor"]["name"] == "Ana" and second["session"] != first["session"]
    assert second["transferred"] == {"from_desk": "support", "from_agent": "agent-kim",
                                     "note": "NHIS enrolment"}  # fmt: skip
    lines = [(x["name"], x["text"], x["lang"]) for x in second["transcript"]]
    assert lines == [
        ("Ana", "Necesito el seguro de salud", "es"),
        ("agent-kim", "Le paso con el seguro nacional", "ko"),
    ]
    ana_second = await ana.expect("desk_assigned", timeout=10)
    assert ana_second["room"] == second["room"] != first["room"]
    assert "transcript" not in ana_second  # the agent's copy carries it


async def test_transfer_to_one_agent_waits_for_that_agent(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support")
    kim, _ = await agent(hub, "support", "agent-kim", ["en"])
    ana, _ = await visitor(hub, http, "support", "Ana", "en")
    first = await kim.expect("desk_assigned", timeout=10)
    lee, _ = await agent(hub, "support", "agent-lee", ["en"], status="away")
    await kim.request({"type": "desk_status", "status": "away"})
    moved = await kim.request(
        {"type": "desk_transfer", "session": first["session"], "agent": "agent-lee"}
    )
    assert moved["outcome"] == "transferred"
    state = await state_after(lee, "requeued")
    assert state["queue"][0]["for_agent"] == "agent-lee" and state["queue"][0]["front"] is True
    await kim.request({"type": "desk_status", "status": "available"})  # not for kim
    await barrier(kim)
    assert len(kim.received("desk_assigned")) == 1
    await lee.request({"type": "desk_status", "status": "available"})
    assert (await lee.expect("desk_assigned", timeout=10))["visitor"]["name"] == "Ana"
    await ana.expect("desk_assigned", timeout=10)


async def test_no_visitor_learns_about_another(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", languages=["es", "ko"])
    ana_token = await visitor_token(hub, http, "support", "Ana Secret", "es")
    ana = await connect(hub, ana_token)
    await ana.request({"type": "desk_join"})
    bora, _ = await visitor(hub, http, "support", "Bora Hidden", "ko")
    kim, _ = await agent(hub, "support", "agent-kim", ["es"])
    ana_assigned = await ana.expect("desk_assigned", timeout=10)
    kim_assigned = await kim.expect("desk_assigned", timeout=10)
    lee, _ = await agent(hub, "support", "agent-lee", ["ko"])
    bora_assigned = await bora.expect("desk_assigned", timeout=10)
    await lee.expect("desk_assigned", timeout=10)

    # every agent message is refused for a visitor, whatever it names
    session = bora_assigned["session"]
    for msg in (
        {"type": "desk_status", "status": "available"},
        {"type": "desk_take"},
        {"type": "desk_take", "ticket": kim_assigned["visitor"]["ticket"]},
        {"type": "desk_add", "session": session},
        {"type": "desk_transfer", "session": session, "desk": "support"},
        {"type": "desk_end", "session": session, "outcome": "resolved"},
        {"type": "join"},
    ):
        await ana.send({**msg, "id": "x"})
        err = await ana.expect("error", ref="x", timeout=10)
        assert err["code"] == "forbidden", (msg, err)
    # the admin API with a visitor's token
    bearer = {"Authorization": f"Bearer {ana_token}"}
    for path in ("/v1/admin/desks", "/v1/admin/desks/support", "/v1/admin/rooms",
                 f"/v1/admin/rooms/{bora_assigned['room']}"):  # fmt: skip
        status, body = await call(http, "GET", hub.url + path, headers=bearer)
        assert status == 403 and body["error"] == "forbidden", (path, body)
    # the visitor's room token opens its own room only
    room_token = ana_assigned["token"]
    params = {"access_token": room_token, "room": bora_assigned["room"]}
    async with http.get(f"{hub.url}/v1/signal", params=params) as r:
        assert r.status == 401 and (await r.json())["error"] == "token_wrong_room"
    # a visitor's desk token joins no room, its own desk's name included
    params = {"access_token": ana_token, "room": "desk.support"}
    async with http.get(f"{hub.url}/v1/signal", params=params) as r:
        assert r.status == 426  # a valid token ... and then join is refused (above)
    await barrier(ana)
    seen = repr(ana.inbox)
    for secret in ("Bora", "Hidden", bora_assigned["room"], session,
                   kim_assigned["visitor"]["ticket"], "agent-lee"):  # fmt: skip
        assert secret not in seen, secret
    # nobody's languages, tickets or queue: not even Ana's own ticket
    assert not any({"visitor", "queue", "speak", "read", "ticket"} & set(m) for m in ana.inbox)
    assert {m["type"] for m in ana.inbox} <= {"desk_waiting", "desk_assigned", "error", "pong"}


async def test_a_full_desk_says_so(start_hub: StartHub, http: aiohttp.ClientSession) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", max_queue=2)
    late = await visitor_token(hub, http, "support", "Late", "en")  # minted while there was room
    await visitor(hub, http, "support", "One", "en")
    await visitor(hub, http, "support", "Two", "en")
    status, body = await visit(hub, http, "support", "Three", "en")
    assert status == 409 and body["error"] == "desk_full"
    assert "try again later" in body["message"] and "estimated_wait" in body
    c = await connect(hub, late)
    full = await c.request({"type": "desk_join"})
    assert full["type"] == "desk_unavailable" and full["reason"] == "full"
    status, shown = await call(http, "GET", f"{hub.url}/v1/desks/support")
    assert status == 200 and shown["queue_full"] is True and shown["open"] is True
    # the socket stays, and may try again when someone left
    assert not c.ws.closed


async def test_a_closed_desk_says_when_it_opens(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support")
    early = await visitor_token(hub, http, "support", "Early", "en")
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%a").lower()
    status, body = await call(
        http, "PATCH", f"{hub.url}/v1/admin/desks/support", headers=admin_headers(),
        json={"hours": f"{tomorrow} 00:00-24:00", "timezone": "UTC",
              "closed_message": "Closed today. Open tomorrow."},
    )  # fmt: skip
    assert status == 200, body
    midnight = dt.datetime.combine(
        dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1), dt.time(), dt.UTC
    ).timestamp()
    status, body = await visit(hub, http, "support", "Ana", "es")
    assert status == 409 and body["error"] == "desk_closed"
    assert body["message"] == "Closed today. Open tomorrow." and body["opens_at"] == midnight
    status, shown = await call(http, "GET", f"{hub.url}/v1/desks/support")
    assert shown["open"] is False and shown["opens_at"] == midnight
    c = await connect(hub, early)
    closed = await c.request({"type": "desk_join"})
    assert closed["type"] == "desk_unavailable" and closed["reason"] == "closed"
    assert closed["opens_at"] == midnight and closed["message"] == "Closed today. Open tomorrow."


async def test_an_agent_lost_mid_session_requeues_the_visitor_first(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub, desk_agent_grace=0.3)
    await make_desk(hub, http, "support")
    kim, _ = await agent(hub, "support", "agent-kim", ["en"])
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    assigned = await ana.expect("desk_assigned", timeout=10)
    ana_room = await room_client(hub, assigned)
    await ana_room.request({"type": "chat", "text": "hola"})
    bob, w = await visitor(hub, http, "support", "Bob", "en")
    assert w["position"] == 1
    await kim.close()
    back = await ana.expect("desk_waiting", timeout=10)
    assert back["position"] == 1 and back["notice"]["code"] == "agent_disconnected"
    assert (await bob.expect("desk_waiting", position=2, timeout=10))["agents_online"] == 0
    assert await ana_room.closed(timeout=10) == 4005
    lee, _ = await agent(hub, "support", "agent-lee", ["en"])
    again = await lee.expect("desk_assigned", timeout=10)
    assert again["visitor"]["name"] == "Ana" and [x["text"] for x in again["transcript"]] == [
        "hola"
    ]
    lost = await metric(
        hub.url, "commhub_desk_sessions_total", desk="support", outcome="agent_lost"
    )
    assert lost == 1


async def test_an_agent_back_within_its_grace_keeps_its_session(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub, desk_agent_grace=60)
    await make_desk(hub, http, "support")
    kim, _ = await agent(hub, "support", "agent-kim", ["en"])
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    first = await kim.expect("desk_assigned", timeout=10)
    await kim.close()
    kim2, state = await agent(hub, "support", "agent-kim", ["en"])
    again = kim2.received("desk_assigned")
    assert again and again[0]["session"] == first["session"] and again[0]["room"] == first["room"]
    assert [s["session"] for s in state["sessions"]] == [first["session"]]
    await barrier(ana)
    assert not ana.received("desk_ended")


async def test_colleague_and_interpreter_join_the_session(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support")
    await make_desk(hub, http, "interpreters", assign="manual")
    kim, _ = await agent(hub, "support", "agent-kim", ["ko"])
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    session = await kim.expect("desk_assigned", timeout=10)
    helper, _ = await agent(hub, "interpreters", "agent-ruiz", ["es", "ko"], status="away")
    added = await kim.request({"type": "desk_add", "session": session["session"],
                               "agent": "agent-ruiz"})  # fmt: skip
    assert added == {"type": "desk_added", "session": session["session"], "agent": "agent-ruiz",
                     "ref": added["ref"]}  # fmt: skip
    invited = await helper.expect("desk_invited", timeout=10)
    assert invited["room"] == session["room"] and invited["by"]["identity"] == "agent-kim"
    assert auth.verify(SECRET, invited["token"]).room == session["room"]
    link = await kim.request({"type": "desk_add", "session": session["session"]})
    assert link["link"].startswith("/join/")
    status, shown = await call(http, "GET", f"{hub.url}/v1/invites/{link['link'][6:]}")
    assert status == 200 and shown["room"] == session["room"] and shown["uses_left"] == 1
    await kim.send(
        {"type": "desk_add", "session": session["session"], "agent": "nobody", "id": "n"}
    )
    assert (await kim.expect("error", ref="n"))["code"] == "unknown_agent"
    del ana


async def test_shutdown_tells_and_closes_desk_connections(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", assign="manual")
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    kim, _ = await agent(hub, "support", "agent-kim", ["es"])
    await hub.server.close()
    for c in (ana, kim):
        assert (await c.expect("server_shutdown", timeout=10))["reconnect_after"] > 0
        assert await c.closed(timeout=10) == 1001


async def test_the_console_says_whether_captions_and_translation_bridge_the_pair(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub()  # captions and translation as the hub is installed
    await make_desk(hub, http, "support", languages=["ko", "en"], assign="manual")
    await visitor(hub, http, "support", "Ana", "es", read="es")
    await visitor(hub, http, "support", "Minho", "ko", read="en")
    status, langs = await call(http, "GET", f"{hub.url}/v1/languages")
    assert status == 200
    captioned = {x["code"] for x in langs["languages"] if x["captions"]}
    pairs = {(p["from"], p["to"]) for p in langs["pairs"]}

    def bridges(speak: str, read: str, lang: str) -> bool:
        there = speak == lang or (speak, lang) in pairs
        back = read == lang or (lang, read) in pairs
        return there and back

    _, state = await agent(hub, "support", "agent-kim", ["ko", "en"])
    for entry in state["queue"]:
        assert entry["captions"] == (entry["speak"] in captioned), entry
        assert set(entry["translate"]) == {"ko", "en"}
        for lang, ok in entry["translate"].items():
            assert ok == bridges(entry["speak"], entry["read"], lang), (entry, lang)
    # Minho speaks Korean and reads English: a Korean agent needs ko -> en for him to read
    minho = next(e for e in state["queue"] if e["name"] == "Minho")
    assert minho["translate"]["ko"] == (("ko", "en") in pairs)
    assert minho["translate"]["en"] == (("ko", "en") in pairs)


async def test_the_estimate_follows_recent_handling_times(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start(start_hub)
    await make_desk(hub, http, "support", assign="manual")
    kim, _ = await agent(hub, "support", "agent-kim", ["en"])
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    _, w = await visitor(hub, http, "support", "Bob", "en")
    carol, w3 = await visitor(hub, http, "support", "Carol", "en")
    assert (w["estimated_wait"], w3["estimated_wait"]) == (600.0, 900.0)  # the default, 300 s
    taken = await kim.request({"type": "desk_take"})
    await asyncio.sleep(0.5)
    await kim.request({"type": "desk_end", "session": taken["session"], "outcome": "no_show"})
    update = await carol.expect("desk_waiting", position=2, timeout=10)
    while update["estimated_wait"] == 600.0:  # moved up first, then the estimate follows
        update = await carol.expect("desk_waiting", position=2, timeout=10)
    assert 0.5 * 2 <= update["estimated_wait"] < 60  # 2 x the one session's 0.5+ s
    assert await metric(hub.url, "commhub_desk_agents", desk="support", status="available") == 1
    del ana
