"""Python client SDK for commhub rooms: signalling plus an aiortc peer (direct peer in p2p)."""

from commhub.sdk.client import STATES, RemoteTrack, RoomClient
from commhub.sdk.signal import (
    ChannelClosed,
    Refused,
    SchemaViolation,
    SignalChannel,
    SignalError,
)

__all__ = [
    "STATES",
    "ChannelClosed",
    "Refused",
    "RemoteTrack",
    "RoomClient",
    "SchemaViolation",
    "SignalChannel",
    "SignalError",
]
