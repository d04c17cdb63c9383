"""A cheap look at a client's SDP before aiortc parses or applies it.

aiortc builds a transceiver (and, until BUNDLE folds them, an ICE and DTLS transport) for
every media section it is given, and the hub then relays each sending section to every
subscriber: the number of sections is the cost. So sections are counted and their mids
checked with a line scan first; aiortc sees only descriptions already within the limits.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


@dataclass
class Section:
    kind: str
    port: int
    mid: str | None = None
    direction: str = ""  # "" until an a=<direction> line: the session's, else sendrecv
    track_id: str | None = None  # from a=msid:<stream> <track>; "" when the line lacks it

    @property
    def sending(self) -> bool:
        return self.port != 0 and self.direction in ("sendonly", "sendrecv")


@dataclass
class Shape:
    sections: list[Section] = field(default_factory=list)

    def duplicate_mid(self) -> str | None:
        seen: set[str] = set()
        for s in self.sections:
            if s.mid is not None:
                if s.mid in seen:
                    return s.mid
                seen.add(s.mid)
        return None


def shape(sdp: str) -> Shape:
    """Sections, mids, directions and msid track ids, from one pass over the lines."""
    out = Shape()
    session_direction = "sendrecv"
    current: Section | None = None
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            parts = line[2:].split(" ")
            try:
                port = int(parts[1].split("/")[0]) if len(parts) > 1 else 0
            except ValueError:
                port = -1
            current = Section(parts[0], port)
            out.sections.append(current)
        elif line.startswith("a="):
            attr = line[2:]
            if attr in DIRECTIONS:
                if current is None:
                    session_direction = attr
                else:
                    current.direction = attr
            elif current is None:
                continue
            elif attr.startswith("mid:"):
                current.mid = attr[4:]
            elif attr.startswith("msid:"):
                ids = attr[5:].split(" ")
                current.track_id = ids[1] if len(ids) > 1 else ""
    for s in out.sections:
        s.direction = s.direction or session_direction
    return out


def candidate_address(line: str) -> str | None:
    """The connection address of an ICE candidate line (`candidate:` prefix optional)."""
    parts = line.removeprefix("a=").removeprefix("candidate:").split()
    return parts[4] if len(parts) > 4 else None


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def strip_named_candidates(sdp: str) -> tuple[str, int]:
    """Drop candidates named by a host name (mDNS `.local`) instead of an IP address.

    The hub never resolves them (aioice would ask the LAN over multicast DNS for any name
    a client chose). The client's own connectivity checks reach the hub anyway and make it
    learn the address as a peer-reflexive candidate; for that it must not be told that the
    candidates ended, so `a=end-of-candidates` goes too when something was dropped.
    Returns the description and how many candidates were dropped.
    """
    lines = sdp.split("\r\n") if "\r\n" in sdp else sdp.split("\n")
    kept: list[str] = []
    dropped = 0
    for line in lines:
        if line.startswith("a=candidate:"):
            address = candidate_address(line)
            if address is not None and not is_ip(address):
                dropped += 1
                continue
        kept.append(line)
    if not dropped:
        return sdp, 0
    kept = [line for line in kept if line != "a=end-of-candidates"]
    return ("\r\n" if "\r\n" in sdp else "\n").join(kept), dropped
