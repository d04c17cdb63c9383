"""Python client SDK for commhub rooms: signalling plus an aiortc peer (direct peer in p2p)."""

from commhub.sdk.client import STATES, Refused, RemoteTrack, RoomClient, SignalError

__all__ = ["STATES", "Refused", "RemoteTrack", "RoomClient", "SignalError"]
