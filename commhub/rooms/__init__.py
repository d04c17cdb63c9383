"""Rooms and their participants: membership, presence, chat history, capacity."""

from commhub.rooms.participant import Connection, Participant
from commhub.rooms.registry import RoomFull, Rooms
from commhub.rooms.room import Room, base_language

__all__ = ["Connection", "Participant", "Room", "RoomFull", "Rooms", "base_language"]
