"""Hypothesis strategies for hostile client input, built from the protocol's own schemas.

hypothesis-jsonschema cannot follow `urn:commhub:defs#/...` references, so each client
schema is inlined first (`inline`). On top of the valid messages it draws, `hostile`
mutates them the ways an attacker would: wrong types, sizes around every limit, unknown
fields, deep nesting, lone surrogates and noncharacters, long ids, and malformed JSON.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator

SCHEMAS = Path(__file__).parent.parent / "signalling" / "schemas"
CLIENT_TYPES = sorted(p.stem for p in (SCHEMAS / "client").glob("*.json"))
DEFS_ID = "urn:commhub:defs"


def inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every $ref into defs.json replaced by the definition it names."""
    if isinstance(node, list):
        return [inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        base, _, pointer = ref.partition("#")
        if base not in (DEFS_ID, "") or not pointer.startswith("/$defs/"):
            raise ValueError(f"cannot inline reference {ref!r}")
        target = inline(defs[pointer.removeprefix("/$defs/")], defs)
        rest = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **inline(rest, defs)} if rest else target
    return {k: inline(v, defs) for k, v in node.items() if k not in ("$schema", "$id")}


@cache
def client_schemas() -> dict[str, dict[str, Any]]:
    defs = json.loads((SCHEMAS / "defs.json").read_text("utf-8"))["$defs"]
    return {
        kind: inline(json.loads((SCHEMAS / "client" / f"{kind}.json").read_text("utf-8")), defs)
        for kind in CLIENT_TYPES
    }


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """from_schema, with closed objects and oneOf built here: hypothesis-jsonschema rebuilds
    an object's property strategies on every draw (about 10 ms per message); fixed
    dictionaries of its leaf strategies draw the same values 5-10x faster. The whole schema
    still filters the result (minProperties, anyOf)."""
    check = Draft202012Validator(schema).is_valid
    if "oneOf" in schema:
        base = {k: v for k, v in schema.items() if k not in ("oneOf", "description")}
        return st.one_of([strategy({**base, **branch}) for branch in schema["oneOf"]]).filter(check)
    props = schema.get("properties")
    if schema.get("type") == "object" and props and schema.get("additionalProperties") is False:
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: strategy(v) for k, v in props.items() if k in required},
            optional={k: strategy(v) for k, v in props.items() if k not in required},
        ).filter(check)
    return from_schema(schema)


@cache
def valid_message(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return strategy(client_schemas()[kind])


# -- text an attacker likes ----------------------------------------------------------------

NONCHARACTERS = ["\uffff", "\ufffe", "\ufdd0", "\ufdef", "\U0001fffe", "\U0010ffff"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
CONTROLS = [chr(c) for c in [*range(0x20), 0x7F, 0x85]] + ["\u2028", "\u2029", "\u202e", "\ufeff"]
ODD = NONCHARACTERS + SURROGATES + CONTROLS + ["\u0301", "\U0001f600", "한", "\u200b"]

odd_char = st.sampled_from(ODD)
# Any code point, lone surrogates included (the JSON encoder escapes them as \udXXX).
any_char = st.characters(codec=None, categories=None)


def hostile_text(min_size: int = 0, max_size: int = 80) -> st.SearchStrategy[str]:
    return st.lists(
        st.one_of(any_char, odd_char, st.sampled_from(["x", " ", "word"])),
        min_size=min_size,
        max_size=max_size,
    ).map("".join)


# Sizes at and around the limits: id 64, name 80, chat 4000, translate 2000, SDP 32/64 KiB.
BOUNDARY_SIZES = [0, 1, 63, 64, 65, 79, 80, 81, 1999, 2000, 2001, 3999, 4000, 4001]
big_sizes = st.sampled_from([5000, 20_000, 32 * 1024 + 1, 60_000, 65_536, 70_000])


@st.composite
def sized_text(draw: st.DrawFn) -> str:
    n = draw(st.one_of(st.sampled_from(BOUNDARY_SIZES), big_sizes, st.integers(0, 300)))
    unit = draw(st.sampled_from(["x", "é", "한", "\U0001f600", "\uffff", " word", "\ud800"]))
    return (unit * (n // len(unit) + 1))[:n]


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def nest(depth: int, kind: str) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


# -- mutations of a valid message ----------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, msg: dict[str, Any]) -> dict[str, Any]:
    msg = copy.deepcopy(msg)
    keys = [k for k in msg if k != "type"]
    how = draw(
        st.sampled_from(
            ["wrong_type", "sized", "hostile", "unknown_field", "nested", "long_id", "drop"]
        )
    )
    if how == "wrong_type" and keys:
        msg[draw(st.sampled_from(keys))] = draw(json_value)
    elif how == "sized":
        msg[draw(st.sampled_from([*keys, "id", "text", "name", "sdp", "track_id"]))] = draw(
            sized_text()
        )
    elif how == "hostile":
        msg[draw(st.sampled_from([*keys, "id", "type"]))] = draw(hostile_text(max_size=40))
    elif how == "unknown_field":
        msg[draw(hostile_text(min_size=1, max_size=10))] = draw(json_value)
    elif how == "nested":
        depth = draw(st.sampled_from([15, 16, 17, 32, 100, 1000]))
        msg[draw(st.sampled_from([*keys, "x"]))] = nest(
            depth, draw(st.sampled_from(["list", "obj"]))
        )
    elif how == "long_id":
        msg["id"] = "i" * draw(st.sampled_from([65, 100, 1000, 60_000]))
    elif how == "drop" and keys:
        del msg[draw(st.sampled_from(keys))]
    return msg


def to_json(msg: Any, ascii_only: bool) -> str:
    """JSON text; lone surrogates always leave as \\udXXX escapes, as an attacker sends them
    (raw, they would make the frame invalid UTF-8: tests/fuzz_frames.py does that)."""
    text = json.dumps(msg, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(msg, ensure_ascii=True)
    return text


def _utf8_safe(text: str) -> str:
    # A str with a lone surrogate cannot become UTF-8: escape those only.
    return "".join(c if not 0xD800 <= ord(c) <= 0xDFFF else f"\\u{ord(c):04x}" for c in text)


RAW_JSON = [
    "",
    " ",
    "null",
    "true",
    "0",
    '"type"',
    "[]",
    "{}",
    "{",
    '{"type":',
    '{"type":"chat","text":"a"',
    '{"type":"ping"}{"type":"ping"}',
    '{"type":"ping","id":1e400}',
    '{"type":"ping","id":NaN}',
    '{"type":"ping","id":Infinity}',
    '{"type":"ice","candidate":{"candidate":"x","sdpMLineIndex":1e400}}',
    '{"type":"ice","candidate":{"candidate":"x","sdpMLineIndex":NaN}}',
    '{"type":"chat","type":"ping"}',
    '{"type":"chat","text":"\\u0000"}',
    '{"type":"chat","text":"hi \\ud800"}',
    '{"type":"chat","text":"\\udfff\\ud800 x"}',
    '{"type":"ping","id":"\\ud800"}',
    '{"type":"\\ud800"}',
    '{"\\ud800":1,"type":"ping"}',
    '{"type":"chat","text":"' + "9" * 5000 + '"}',
    '{"type":"ping","id":' + "9" * 5000 + "}",
    "\ufeff" + '{"type":"ping"}',
    '{"type":"ping"}\x00',
]


@st.composite
def raw_json(draw: st.DrawFn) -> str:
    which = draw(st.integers(0, 3))
    if which == 0:
        return draw(st.sampled_from(RAW_JSON))
    if which == 1:  # nesting far past any sane depth, bare or inside a valid message
        n = draw(st.sampled_from([17, 100, 1000, 32_000]))
        deep = draw(st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "0" + "}" * n]))
        return draw(st.sampled_from([deep, '{"type":"chat","text":"x","x":' + deep + "}"]))
    if which == 2:  # garbage text
        return _utf8_safe(draw(hostile_text(max_size=60)))
    # truncated valid message
    text = to_json(draw(valid_message(draw(st.sampled_from(CLIENT_TYPES)))), True)
    return text[: draw(st.integers(0, max(0, len(text) - 1)))]


@st.composite
def hostile_frame_text(draw: st.DrawFn) -> str:
    """One text frame an attacker sends: valid, mutated, or not even JSON."""
    branch = draw(st.integers(0, 9))
    if branch <= 3:
        msg = draw(valid_message(draw(st.sampled_from(CLIENT_TYPES))))
        return to_json(msg, draw(st.booleans()))
    if branch <= 7:
        msg = draw(valid_message(draw(st.sampled_from(CLIENT_TYPES))))
        return to_json(draw(mutated(msg)), draw(st.booleans()))
    return draw(raw_json())
