"""The wire protocol: message validation against the JSON Schemas in signalling/schemas.

The schemas are the single source of truth; this module only loads and applies them
(the package's `schemas` folder is a link to signalling/schemas).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

PROTOCOL_VERSION = 1
REF_MAX = 64  # longest client `id` echoed as `ref` (defs.json#/$defs/ref)
_SURROGATE = re.compile("[\ud800-\udfff]")


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    FLOODING = "flooding"
    FORBIDDEN = "forbidden"
    ROOM_FULL = "room_full"
    JOIN_TIMEOUT = "join_timeout"
    NOT_SUPPORTED = "not_supported"
    INVALID_SDP = "invalid_sdp"
    NO_MEDIA = "no_media"
    WRONG_STATE = "wrong_state"
    UNKNOWN_PARTICIPANT = "unknown_participant"
    INVALID_CANDIDATE = "invalid_candidate"
    TOO_MANY_TRACKS = "too_many_tracks"
    SDP_TOO_LARGE = "sdp_too_large"
    INTERNAL_ERROR = "internal_error"


class ProtocolError(Exception):
    """A refused message: becomes an `error` message (and a close when fatal)."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


Message = dict[str, Any]


class Schemas:
    """Validators for every client and server message type."""

    def __init__(self) -> None:
        root = resources.files("commhub") / "schemas"
        docs: list[dict[str, Any]] = []
        self.client: dict[str, Draft202012Validator] = {}
        self.server: dict[str, Draft202012Validator] = {}
        defs = json.loads((root / "defs.json").read_text("utf-8"))
        docs.append(defs)
        per_dir: dict[str, dict[str, dict[str, Any]]] = {"client": {}, "server": {}}
        for direction in per_dir:
            for entry in (root / direction).iterdir():
                if entry.name.endswith(".json"):
                    doc = json.loads(entry.read_text("utf-8"))
                    per_dir[direction][entry.name.removesuffix(".json")] = doc
                    docs.append(doc)
        registry: Registry[Any] = Registry().with_resources(
            (doc["$id"], Resource.from_contents(doc)) for doc in docs
        )
        for direction, table in per_dir.items():
            target = self.client if direction == "client" else self.server
            for name, doc in table.items():
                Draft202012Validator.check_schema(doc)
                target[name] = Draft202012Validator(doc, registry=registry)

    def parse_client(self, raw: str | bytes, max_depth: int = 16) -> Message:
        """Decode and validate one client message, or raise ProtocolError.

        Nothing the hub could not send on (a lone surrogate from a JSON escape) or walk
        safely (nesting beyond max_depth) gets past this point."""
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
        except RecursionError:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "nested too deeply") from None
        if not isinstance(msg, dict):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
        ref = client_ref(msg.get("id"))
        problem = unsafe(msg, max_depth)
        if problem:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, problem, ref)
        kind = msg.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "missing string field 'type'", ref)
        validator = self.client.get(kind)
        if validator is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}", ref)
        error = next(iter(sorted(validator.iter_errors(msg), key=_depth)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(message)"
            detail = error.message if len(error.message) <= 200 else error.message[:200] + "..."
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{kind}: {where}: {detail}", ref)
        return msg

    def check_server(self, msg: Message) -> None:
        """Raise jsonschema.ValidationError when a server message breaks its schema."""
        self.server[msg["type"]].validate(msg)


def client_ref(value: Any) -> str | None:
    """The `id` an error may echo as `ref`: only what the schema's ref allows."""
    if isinstance(value, str) and 0 < len(value) <= REF_MAX and not _SURROGATE.search(value):
        return value
    return None


def unsafe(value: Any, max_depth: int) -> str | None:
    """Why a decoded JSON value may not enter the hub, or None: nesting deeper than
    max_depth, or a string with a lone surrogate (valid JSON, but not encodable)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "text with an unpaired surrogate (not valid Unicode)"
            continue
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def encode(msg: Message) -> str:
    """The one way a message is put on the wire (compact, UTF-8 kept)."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


def _depth(error: Any) -> int:
    return len(error.absolute_path)


@cache
def schemas() -> Schemas:
    return Schemas()
