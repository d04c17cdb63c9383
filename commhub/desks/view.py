"""What agents see of a desk (desk_state): the queue with each visitor's language support,
the agents and the sessions."""

from __future__ import annotations

from typing import Any

from commhub import protocol
from commhub.desks.state import DeskState
from commhub.desks.support import LanguageSupport
from commhub.protocol import Message


def snapshot(state: DeskState, support: LanguageSupport, event: dict[str, Any] | None) -> Message:
    """desk_state for every agent (the event's note stays on the bus)."""
    agents_langs = (x for a in state.agents.values() for x in a.languages)
    langs = list(dict.fromkeys([*state.defn.languages, *agents_langs]))
    queue = []
    for v in state.queue:
        entry: dict[str, Any] = {
            **v.public(),
            "since": round(v.since, 3),
            "connected": v.link is not None,
            "front": v.front,
            "for_agent": v.for_agent,
            "captions": support.has_captions(v.speak),
            "translate": {x: support.bridges(v.speak, v.read, x) for x in langs},
        }
        if v.transferred is not None:
            entry["transferred"] = v.transferred
        queue.append(entry)
    return protocol.desk_state(
        desk=state.defn.state_wire(),
        queue=queue,
        agents=[a.wire() for a in state.agents.values()],
        sessions=[s.wire() for s in state.sessions.values()],
        event={k: v for k, v in event.items() if k != "note"} if event else None,
    )
