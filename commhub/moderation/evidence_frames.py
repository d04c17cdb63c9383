"""Evidence frames of flagged video: stored blurred, indexed by room and identity.

What a flagged track showed is kept only as a strongly blurred picture (enough to see
that a frame was there and roughly what it was, not to look at it), as a JPEG under
`<data_dir>/evidence/<room>/<identity hash>/` with a JSON sidecar of what flagged it.
The index is rebuilt from the sidecars at start, so a report filed after a restart still
finds the frames.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger("commhub.moderation.evidence_frames")

KEEP = 20  # frames indexed per (room, identity); older ones stay on disk until retention
BLUR_FRACTION = 0.05  # Gaussian sigma as a fraction of the picture's longer side


def blur(picture: np.ndarray) -> np.ndarray:
    """A strong Gaussian blur: shapes and colours survive, details do not."""
    sigma = max(4.0, BLUR_FRACTION * max(picture.shape[:2]))
    blurred: np.ndarray = cv2.GaussianBlur(picture, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return blurred


_SAFE_ROOM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def room_folder(room: str) -> str:
    # Room names are checked at join (auth's pattern); anything else is hashed, never a path.
    return room if _SAFE_ROOM.fullmatch(room) else "h-" + identity_key(room)


def identity_key(identity: str) -> str:
    # Identities are the token issuer's strings: never a path component as they are.
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class EvidenceFrames:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "evidence"
        self._index: dict[tuple[str, str], deque[dict[str, Any]]] = {}

    def frames(self, room: str, identity: str) -> list[dict[str, Any]]:
        """The latest blurred frames of identity in room, oldest first: path, label, score,
        ts, track (and participant)."""
        return [dict(e) for e in self._index.get((room, identity), ())]

    def add(self, entry: dict[str, Any]) -> None:
        key = (entry["room"], entry["identity"])
        self._index.setdefault(key, deque(maxlen=KEEP)).append(entry)

    def save(
        self,
        picture: np.ndarray,
        *,
        room: str,
        identity: str,
        participant: str,
        track: str,
        label: str,
        score: float,
        ts: float,
    ) -> dict[str, Any]:
        """Blur and write one frame (blocking: run it on a worker); returns its entry."""
        folder = self.root / room_folder(room) / identity_key(identity)
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{int(ts * 1000)}-{secrets.token_hex(4)}"
        path = folder / f"{stem}.jpg"
        if not cv2.imwrite(str(path), blur(picture), [cv2.IMWRITE_JPEG_QUALITY, 80]):
            raise OSError(f"could not write {path}")
        entry = {
            "path": str(path),
            "label": label,
            "score": round(score, 3),
            "ts": round(ts, 3),
            "track": track,
            "participant": participant,
            "room": room,
            "identity": identity,
        }
        (folder / f"{stem}.json").write_text(json.dumps(entry, ensure_ascii=False), "utf-8")
        return entry

    def load(self) -> int:
        """Rebuild the index from the sidecars on disk (blocking: run it on a worker)."""
        found: list[dict[str, Any]] = []
        for sidecar in self.root.glob("*/*/*.json"):
            try:
                entry = json.loads(sidecar.read_text("utf-8"))
                if Path(entry["path"]).exists():
                    found.append(entry)
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("unreadable evidence sidecar %s", sidecar)
        for entry in sorted(found, key=lambda e: float(e.get("ts", 0))):
            self.add(entry)
        return len(found)
