"""Make the hub's renegotiation offers speak the client's payload types and extension ids.

aiortc's createOffer resets every transceiver to its own defaults (Opus 96, VP8 97, mid as
extension 1). A browser that made the first offer chose other numbers (Opus 111, VP8 96,
audio-level as extension 1), and inside one BUNDLE group a number may not change meaning:
Chrome refuses such an offer ("RTP extension ID reassignment not supported"). So the hub
rewrites its offer's numbers to the ones the client already uses, picking unused ones for
anything new. aiortc re-reads the numbers from the client's answer, so the hub then sends
with the rewritten ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/]+)/(\d+)(?:/(\d+))?$")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)(.*)$")
_PT_ATTR = re.compile(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)(.*)$")

CodecKey = tuple[str, ...]


@dataclass
class Numbering:
    """The client's payload types and header-extension ids, from every SDP it sent."""

    pts: dict[CodecKey, int] = field(default_factory=dict)
    used_pts: set[int] = field(default_factory=set)
    ext: dict[str, int] = field(default_factory=dict)

    def learn(self, sdp: str) -> None:
        for section in _sections(sdp)[1:]:
            codecs = _codecs(section)
            for pt, key in codecs.items():
                self.pts.setdefault(key, pt)
                self.used_pts.add(pt)
            for line in section:
                m = _EXTMAP.match(line)
                if m:
                    self.ext.setdefault(m.group(3), int(m.group(1)))

    def rewrite_offer(self, sdp: str) -> str:
        if not self.pts and not self.ext:
            return sdp
        sections = _sections(sdp)
        taken_pts = set(self.used_pts)
        chosen: dict[CodecKey, int] = dict(self.pts)
        taken_ext = set(self.ext.values())
        ext = dict(self.ext)
        out = sections[0]
        for section in sections[1:]:
            codecs = _codecs(section)
            mapping: dict[int, int] = {}
            for pt, key in codecs.items():
                if key not in chosen:
                    chosen[key] = pt if pt not in taken_pts else _free(taken_pts, 96, 127)
                    taken_pts.add(chosen[key])
                mapping[pt] = chosen[key]
            lines = []
            for line in section:
                if line.startswith("m="):
                    parts = line.split(" ")
                    parts[3:] = [
                        str(mapping.get(int(p), p)) if p.isdigit() else p for p in parts[3:]
                    ]
                    line = " ".join(parts)
                elif (m := _PT_ATTR.match(line)) and int(m.group(2)) in mapping:
                    rest = m.group(3)
                    if m.group(1) == "fmtp":
                        rest = _remap_apt(rest, mapping)
                    line = f"a={m.group(1)}:{mapping[int(m.group(2))]}{rest}"
                elif m := _EXTMAP.match(line):
                    uri = m.group(3)
                    if uri not in ext:
                        ext[uri] = _free(taken_ext, 1, 14)
                        taken_ext.add(ext[uri])
                    line = f"a=extmap:{ext[uri]}{m.group(2) or ''} {uri}{m.group(4)}"
                lines.append(line)
            out += lines
        return "\r\n".join(out) + "\r\n"


def _sections(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _codecs(section: list[str]) -> dict[int, CodecKey]:
    """pt -> (name, rate, channels) ; rtx -> ("rtx", rate, apt)."""
    out: dict[int, CodecKey] = {}
    apt: dict[int, str] = {}
    for line in section:
        if m := _FMTP.match(line):
            a = re.search(r"apt=(\d+)", m.group(2))
            if a:
                apt[int(m.group(1))] = a.group(1)
    for line in section:
        if m := _RTPMAP.match(line):
            pt, name = int(m.group(1)), m.group(2).lower()
            if name == "rtx":
                out[pt] = ("rtx", m.group(3), apt.get(pt, "?"))
            else:
                out[pt] = (name, m.group(3), m.group(4) or "1")
    # rtx keys name the primary codec, not its number (numbers differ between peers)
    for pt, key in list(out.items()):
        if key[0] == "rtx" and key[2].isdigit() and int(key[2]) in out:
            out[pt] = ("rtx", key[1], *out[int(key[2])])
    return out


def _remap_apt(params: str, mapping: dict[int, int]) -> str:
    return re.sub(r"apt=(\d+)", lambda a: f"apt={mapping.get(int(a.group(1)), a.group(1))}", params)


def _free(taken: set[int], lo: int, hi: int) -> int:
    for n in range(lo, hi + 1):
        if n not in taken:
            return n
    raise ValueError(f"no free number in {lo}..{hi}")
