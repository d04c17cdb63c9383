"""Hostile SDP and ICE candidates as Hypothesis strategies.

SDPs are mutations of a real offer made by an aiortc peer (line drops, duplicates,
duplicate mids, hundreds of sections, hostile track ids, codecs, ports, directions,
padding past the SDP limit, bare garbage). Candidates are garbage or well-formed lines with
hostile fields. Every address in them is a loopback one: the hub starts ICE checks
towards what it is given, and tests talk to nothing but this machine. (`.local` mDNS
names make the hub query the network: tests/fuzz_corpus/09-mdns-candidates.json.)
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import strategies as st

from tests.fuzz_schemas import hostile_text

PEER, SELF = "@peer", "@self"  # replaced by the real participant ids when sent


def split_sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    head: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            head.append(line)
    return head, sections


def join_sdp(head: list[str], sections: list[list[str]], eol: str = "\r\n") -> str:
    return eol.join(head + [line for s in sections for line in s]) + eol


def _renumber(section: list[str], mid: str, track: str | None = None) -> list[str]:
    out = []
    for line in section:
        if line.startswith("a=mid:"):
            line = f"a=mid:{mid}"
        elif line.startswith("a=msid:") and track is not None:
            line = line.rsplit(" ", 1)[0] + " " + track
        out.append(line)
    return out


LOOPBACK_HOSTS = ["127.0.0.1", "127.3.2.1", "::1", "0.0.0.0", "::", "localhost"]
CODECS = ["opus/48000/2", "VP8/90000", "H264/90000", "VP9/90000", "PCMU/8000", "x/0", "opus"]


@st.composite
def hostile_sdp(draw: st.DrawFn, seed: str) -> str:
    head, sections = split_sections(seed)
    how = draw(
        st.sampled_from(
            [
                "seed", "drop", "dup_line", "set_value", "insert", "dup_mid", "many",
                "msid", "codec", "port", "direction", "lf", "pad", "truncate", "garbage",
                "candidate", "no_bundle",
            ]
        )
    )  # fmt: skip
    lines = head + [line for s in sections for line in s]
    if how == "garbage":
        return draw(hostile_text(min_size=1, max_size=200))
    if how == "drop":
        for i in sorted(draw(st.sets(st.integers(0, len(lines) - 1), max_size=4)), reverse=True):
            del lines[i]
        return "\r\n".join(lines) + "\r\n"
    if how == "dup_line":
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        return "\r\n".join(lines) + "\r\n"
    if how == "set_value":
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][:2] + draw(hostile_text(max_size=60))
        return "\r\n".join(lines) + "\r\n"
    if how == "insert":
        i = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(["a=", "b=", "x=", "", "m=", "c=", "a=ssrc:1 "]))
        lines.insert(i, kind + draw(hostile_text(max_size=60)))
        return "\r\n".join(lines) + "\r\n"
    if how == "dup_mid":
        k = draw(st.integers(0, len(sections) - 1))
        sections.append(list(sections[k]))
        return join_sdp(head, sections)
    if how == "many":
        n = draw(st.sampled_from([2, 3, 4, 5, 8, 33, 100, 400]))
        base = sections[draw(st.integers(0, len(sections) - 1))]
        extra = [_renumber(base, f"x{i}", f"track-x{i}") for i in range(n)]
        head = [line for line in head if not line.startswith("a=group:BUNDLE")]
        return join_sdp(head, sections + extra)
    if how == "msid":
        track = draw(
            st.one_of(
                hostile_text(min_size=1, max_size=40),
                st.sampled_from(["", " ", "a" * 128, "a" * 129, "a" * 5000, "{}", "t\x00"]),
            )
        )
        k = draw(st.integers(0, len(sections) - 1))
        sections[k] = _renumber(sections[k], _mid(sections[k]), track)
        return join_sdp(head, sections)
    if how == "codec":
        pt = draw(st.sampled_from(["96", "0", "127", "128", "300", "-1", "x"]))
        codec = draw(st.sampled_from(CODECS))
        k = draw(st.integers(0, len(sections) - 1))
        m = sections[k][0].split(" ")
        sections[k] = [" ".join([*m[:3], pt])] + [
            f"a=rtpmap:{pt} {codec}" if line.startswith("a=rtpmap:") else line
            for line in sections[k][1:]
            if not line.startswith(("a=rtcp-fb:", "a=fmtp:"))
        ]
        return join_sdp(head, sections)
    if how == "port":
        port = draw(st.sampled_from(["0", "9", "65535", "65536", "-1", "x", "99999999999999"]))
        k = draw(st.integers(0, len(sections) - 1))
        m = sections[k][0].split(" ")
        sections[k][0] = " ".join([m[0], port, *m[2:]])
        return join_sdp(head, sections)
    if how == "direction":
        d = draw(st.sampled_from(["sendonly", "recvonly", "sendrecv", "inactive", "sendsend"]))
        return re.sub(r"a=(sendonly|recvonly|sendrecv|inactive)", f"a={d}", seed)
    if how == "lf":
        return seed.replace("\r\n", draw(st.sampled_from(["\n", "\r", "\r\r\n", " "])))
    if how == "pad":
        size = draw(st.sampled_from([100, 32 * 1024 - 2000, 32 * 1024, 40_000, 60_000]))
        return seed + "a=x-pad:" + "p" * size + "\r\n"
    if how == "truncate":
        return seed[: draw(st.integers(1, len(seed) - 1))]
    if how == "candidate":
        k = draw(st.integers(0, len(sections) - 1))
        sections[k].append("a=" + draw(candidate_line()))
        return join_sdp(head, sections)
    if how == "no_bundle":
        return join_sdp([line for line in head if "BUNDLE" not in line], sections)
    return seed


def _mid(section: list[str]) -> str:
    return next((line[6:] for line in section if line.startswith("a=mid:")), "0")


@st.composite
def candidate_line(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 4)) == 0:
        return draw(hostile_text(max_size=80))
    num = st.sampled_from(["0", "1", "2", "256", "-1", "4294967295", "99999999999999999999", "x"])
    fields = [
        draw(st.sampled_from(["1", "abc", "", "f" * 40])),
        draw(num),
        draw(st.sampled_from(["udp", "UDP", "tcp", "sctp", "x"])),
        draw(num),
        draw(st.sampled_from(LOOPBACK_HOSTS)),
        draw(st.sampled_from(["9", "0", "65535", "65536", "-1", "x"])),
        "typ",
        draw(st.sampled_from(["host", "srflx", "prflx", "relay", "bogus"])),
    ]
    if draw(st.booleans()):
        fields += ["raddr", draw(st.sampled_from(LOOPBACK_HOSTS)), "rport", draw(num)]
    if draw(st.booleans()):
        fields += [
            draw(st.sampled_from(["generation", "ufrag", "tcptype", "network-id", "x"])),
            draw(st.one_of(num, hostile_text(max_size=10))),
        ]
    if draw(st.booleans()):
        del fields[draw(st.integers(0, len(fields) - 1))]
    prefix = draw(st.sampled_from(["candidate:", "candidate:", "", "a=candidate:"]))
    return prefix + " ".join(fields)


@st.composite
def ice_candidate(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return None
    cand: dict[str, Any] = {"candidate": draw(candidate_line())}
    if draw(st.booleans()):
        cand["sdpMid"] = draw(st.sampled_from([None, "0", "1", "x", "a" * 32]))
    if draw(st.booleans()):
        cand["sdpMLineIndex"] = draw(st.sampled_from([None, 0, 1, 255]))
    if draw(st.booleans()):
        cand["usernameFragment"] = draw(st.one_of(st.none(), hostile_text(max_size=20)))
    return cand


@st.composite
def media_message(draw: st.DrawFn, seed: str) -> dict[str, Any]:
    kind = draw(st.sampled_from(["offer", "offer", "offer", "answer", "ice", "ice", "track"]))
    msg: dict[str, Any] = {"type": kind, "id": f"m{draw(st.integers(0, 999))}"}
    if kind in ("offer", "answer"):
        msg["sdp"] = draw(hostile_sdp(seed))
    elif kind == "ice":
        msg["candidate"] = draw(ice_candidate())
    else:
        _, sections = split_sections(seed)
        ids = [line.rsplit(" ", 1)[1] for s in sections for line in s if line.startswith("a=msid:")]
        msg["track_id"] = draw(st.one_of(st.sampled_from(ids or ["t"]), hostile_text(1, 20)))
        msg["muted"] = draw(st.booleans())
        if draw(st.booleans()):
            msg["source"] = draw(st.sampled_from(["microphone", "camera", "screen"]))
    if kind != "track" and draw(st.integers(0, 3)) == 0:
        msg["to"] = draw(st.sampled_from([PEER, PEER, SELF, "PA_nobody123"]))
    return msg
