"""The wire protocol's schemas are valid, and the example vectors in signalling/ obey them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from commhub.protocol import ErrorCode, ProtocolError, schemas

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
