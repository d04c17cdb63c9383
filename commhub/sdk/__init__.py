"""Python client SDK for commhub rooms: signalling plus an aiortc peer (direct peer in p2p)."""

from commhub.sdk.client import RemoteTrack, RoomClient, SignalError

__all__ = ["RemoteTrack", "RoomClient", "SignalError"]
