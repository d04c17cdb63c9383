"""Access tokens: minted, verified, and refused with a precise reason before the upgrade."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import jwt
import pytest

from commhub import auth
from tests.conftest import SECRET, Running


def test_roundtrip_carries_every_claim() -> None:
    token = auth.issue(
        SECRET,
        room="desk-1",
        identity="u42",
        name="Minji",
        role="agent",
        grants=["publish", "chat", "moderate"],
        speak="ko",
        read="en",
        ttl=60,
    )
    c = auth.verify(SECRET, token)
    assert (c.identity, c.room, c.name, c.role) == ("u42", "desk-1", "Minji", "agent")
    assert c.grants == frozenset({"publish", "chat", "moderate"})
    assert (c.speak, c.read) == ("ko", "en")
    assert c.can("moderate") and not c.can("subscribe") and not c.can("admin")
    assert time.time() + 50 < c.expires <= time.time() + 61


def test_admin_can_do_everything_and_any_room() -> None:
    c = auth.verify(SECRET, auth.issue(SECRET, room="*", identity="ops", grants=["admin"]))
    assert c.can("publish") and c.admits("any-room")
    plain = auth.verify(SECRET, auth.issue(SECRET, room="a", identity="u"))
    assert plain.admits("a") and not plain.admits("b")


def _forge(payload: dict[str, object], secret: str = SECRET) -> str:
    base = {
        "iss": "commhub",
        "sub": "u",
        "iat": int(time.time()),
        "nbf": int(time.time()),
        "exp": int(time.time()) + 3600,  # made at collection: outlives a long suite
        "room": "lobby",
    }
    return jwt.encode({**base, **payload}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "token_missing"),
        ("", "token_missing"),
        ("not-a-jwt", "token_malformed"),
        (_forge({"exp": int(time.time()) - 60}), "token_expired"),
        (_forge({"nbf": int(time.time()) + 86400}), "token_not_yet_valid"),
        (_forge({}, secret="another-secret-" + "y" * 40), "token_bad_signature"),
        (_forge({"iss": "someone-else"}), "token_bad_issuer"),
        (_forge({"grants": ["fly"]}), "token_malformed"),
        (_forge({"room": "../etc"}), "token_malformed"),
        (_forge({"lang": {"speak": "Korean!"}}), "token_malformed"),
        (jwt.encode({"sub": "u", "room": "lobby"}, SECRET, algorithm="HS256"), "token_malformed"),
    ],
)
def test_refusals(token: str | None, code: str) -> None:
    with pytest.raises(auth.AuthError) as info:
        auth.verify(SECRET, token, leeway=1)
    assert info.value.code == code


def test_alg_none_is_refused() -> None:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps({"sub": "u", "room": "lobby"}).encode())
    token = f"{header}.{body.rstrip(b'=').decode()}."
    with pytest.raises(auth.AuthError) as info:
        auth.verify(SECRET, token)
    assert info.value.code == "token_malformed"


def test_leeway_accepts_small_clock_skew() -> None:
    token = _forge({"exp": int(time.time()) - 3})
    assert auth.verify(SECRET, token, leeway=10).identity == "u"


def test_issue_refuses_bad_values() -> None:
    for kw in (
        {"room": "a b"},
        {"grants": ["root"]},
        {"speak": "xx_YY"},
        {"ttl": 0},
        {"role": "king"},
    ):
        args = {"room": "lobby", "identity": "u", **kw}
        with pytest.raises(ValueError):
            auth.issue(SECRET, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "query", "status", "code"),
    [
        (lambda: "garbage", "", 401, "token_malformed"),
        (lambda: _forge({"exp": int(time.time()) - 60}), "", 401, "token_expired"),
        (lambda: _forge({}, secret="z" * 40), "", 401, "token_bad_signature"),
        (lambda: _forge({"room": "other"}), "&room=lobby", 401, "token_wrong_room"),
        (lambda: _forge({"room": "*", "grants": ["admin"]}), "", 400, "room_required"),
    ],
)
async def test_websocket_refused_before_upgrade(
    hub: Running, make: object, query: str, status: int, code: str
) -> None:
    token = make()  # type: ignore[operator]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(f"{hub.url}/v1/signal?access_token={token}{query}")
        assert info.value.status == status
        async with http.get(f"{hub.url}/v1/signal?access_token={token}{query}") as resp:
            assert resp.status == status
            body = await resp.json()
    assert body["error"] == code and body["message"]
    assert hub.hub.rooms.participant_count() == 0


async def test_no_token_at_all(hub: Running) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{hub.url}/v1/signal") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "token_missing"


async def test_admin_token_joins_a_named_room(hub: Running) -> None:
    token = auth.issue(SECRET, room="*", identity="ops", grants=["admin"])
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{hub.url}/v1/signal?access_token={token}&room=desk-7")
        await ws.send_json({"type": "join"})
        joined = await ws.receive_json()
        assert joined["type"] == "joined" and joined["room"]["name"] == "desk-7"
        await ws.close()


def test_media_mode_claim() -> None:
    assert (
        auth.verify(SECRET, auth.issue(SECRET, room="r", identity="u", media_mode="p2p")).media_mode
        == "p2p"
    )
    assert auth.verify(SECRET, auth.issue(SECRET, room="r", identity="u")).media_mode is None
    with pytest.raises(ValueError):
        auth.issue(SECRET, room="r", identity="u", media_mode="mesh")
    with pytest.raises(auth.AuthError) as info:
        auth.verify(SECRET, _forge({"media": "mesh"}))
    assert info.value.code == "token_malformed"


async def test_a_plain_get_tells_a_browser_why_or_426(hub: Running) -> None:
    """A browser cannot read a refused upgrade: it asks again without upgrading."""
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{hub.url}/v1/signal?access_token={hub.token()}") as r:
            assert r.status == 426 and (await r.json())["error"] == "upgrade_required"
        async with s.get(f"{hub.url}/v1/signal?access_token=garbage") as r:
            assert r.status == 401 and (await r.json())["error"] == "token_malformed"
