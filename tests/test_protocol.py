"""The wire protocol's schemas are valid, and the example vectors in signalling/ obey them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonschema
import pytest

from commhub import protocol
from commhub.protocol import (
    CloseReason,
    ErrorCode,
    LeaveReason,
    MediaClosedReason,
    MediaMode,
    Outgoing,
    OutgoingViolation,
    ProtocolError,
    TrackState,
    schemas,
)

EXAMPLES = Path(__file__).parent.parent / "signalling" / "examples"


def examples(prefix: str) -> list[Path]:
    found = sorted(EXAMPLES.glob(f"{prefix}-*.json"))
    assert found, f"no {prefix} examples"
    return found


@pytest.mark.parametrize("path", examples("client"), ids=lambda p: p.name)
def test_client_examples_validate(path: Path) -> None:
    msg = schemas().parse_client(path.read_text("utf-8"))
    assert msg["type"] == path.stem.removeprefix("client-")


@pytest.mark.parametrize("path", examples("server"), ids=lambda p: p.name)
def test_server_examples_validate(path: Path) -> None:
    schemas().check_server(json.loads(path.read_text("utf-8")))


@pytest.mark.parametrize("path", examples("invalid"), ids=lambda p: p.name)
def test_invalid_examples_are_refused(path: Path) -> None:
    with pytest.raises(ProtocolError) as info:
        schemas().parse_client(path.read_text("utf-8"))
    assert info.value.code == ErrorCode.INVALID_MESSAGE


def test_error_codes_match_schema() -> None:
    enum = schemas().server["error"].schema["properties"]["code"]["enum"]
    assert set(enum) == {c.value for c in ErrorCode}


def test_server_schema_rejects_unknown_fields() -> None:
    with pytest.raises(jsonschema.ValidationError):
        schemas().check_server({"type": "pong", "ts": 1.0, "surprise": True})


@pytest.mark.parametrize("direction", ["client", "server"])
def test_every_message_has_a_valid_example(direction: str) -> None:
    types = set(schemas().client if direction == "client" else schemas().server)
    vectors = {p.stem.removeprefix(f"{direction}-") for p in examples(direction)}
    assert types <= vectors, f"no example for {sorted(types - vectors)}"


def test_close_reasons_and_their_codes() -> None:
    assert CloseReason.LEFT.code == 1000 and CloseReason.SHUTDOWN.code == 1001
    assert CloseReason.FLOODING.code == 1008 and CloseReason.REPLACED.code == 4002
    assert {r.value for r in CloseReason if r.says_bye} == set(
        schemas().server["bye"].schema["properties"]["reason"]["enum"]
    )
    assert all(1000 <= r.code < 5000 for r in CloseReason)


def test_enums_match_schemas() -> None:
    server = schemas().server
    assert {m.value for m in MediaMode} == set(
        server["media_mode"].schema["properties"]["mode"]["enum"]
    )
    assert {s.value for s in TrackState} == set(
        server["track"].schema["properties"]["state"]["enum"]
    )
    assert {r.value for r in LeaveReason} == set(
        server["participant_left"].schema["properties"]["reason"]["enum"]
    )
    assert {r.value for r in MediaClosedReason} == set(
        server["media_closed"].schema["properties"]["reason"]["enum"]
    )


def test_outgoing_check_refuses_a_broken_message(caplog: pytest.LogCaptureFixture) -> None:
    checked = Outgoing(schemas(), check=True)
    good = protocol.media_mode(MediaMode.SFU)
    assert checked.encode(good) == '{"type":"media_mode","mode":"sfu"}'
    broken = {"type": "media_mode", "mode": "p2p"}  # p2p needs peer and offerer
    with pytest.raises(OutgoingViolation, match="media_mode"):
        checked.encode(broken)
    with pytest.raises(OutgoingViolation, match="no server message type"):
        checked.encode({"type": "surprise"})
    # the autouse outgoing_checked fixture would fail this test on the logged errors
    assert len([r for r in caplog.records if r.name == "commhub.protocol"]) == 2
    for handler in logging.getLogger("commhub.protocol").handlers:
        if hasattr(handler, "seen"):
            handler.seen.clear()
    unchecked = Outgoing(schemas(), check=False)
    assert unchecked.encode(broken) == '{"type":"media_mode","mode":"p2p"}'
