"""What a transferred (or re-queued) visitor's next agent gets: the session so far."""

from __future__ import annotations

import logging
from typing import Any

from commhub.hub import Hub

log = logging.getLogger("commhub.desks")

LINES = 200  # newest lines a transfer carries
CHARS = 200_000  # and at most this much text


async def transcript(hub: Hub, room_name: str) -> list[dict[str, Any]]:
    """The store's transcript of the room when the hub keeps one (caption finals and chat,
    with translations), else the room's chat history with the translations its readers got."""
    lines: list[dict[str, Any]] = []
    store = getattr(hub, "store", None)
    if store is not None and hasattr(store, "transcript"):
        try:
            lines = [_line(x) for x in await store.transcript(room_name)]
        except Exception:
            log.exception("reading the transcript of %s failed", room_name)
            lines = []
    if not lines:
        room = hub.rooms.get(room_name)
        if room is not None:
            for m in room.history:
                kept = room.translations.get(m["id"], {})
                lines.append(
                    {
                        "kind": "chat",
                        "name": m["from"]["name"],
                        "lang": m["lang"],
                        "text": m["text"],
                        "ts": m["ts"],
                        "translations": {
                            lang: t["text"] for lang, t in kept.items() if "text" in t
                        },
                    }
                )
    lines = lines[-LINES:]
    while lines and sum(len(x["text"]) for x in lines) > CHARS:
        lines.pop(0)
    return lines


def _line(line: dict[str, Any]) -> dict[str, Any]:
    """A store transcript line in the desk_assigned shape."""
    translations = line.get("translations") or {}
    return {
        "kind": "caption" if line.get("kind") == "caption" else "chat",
        "name": str(line.get("name") or line.get("identity") or ""),
        "lang": str(line.get("lang") or "en"),
        "text": str(line.get("text") or ""),
        "ts": float(line.get("ts") or 0.0),
        "translations": {str(k): str(v) for k, v in translations.items() if isinstance(v, str)},
    }
