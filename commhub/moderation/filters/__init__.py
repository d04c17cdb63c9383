"""Text filters behind one protocol (`Filter`): korcen (ko), better-profanity's list and
alt-profanity-check's model (en), curated lists shipped in lists/ (es, ko additions),
operators' lists per hub and per room. Engines load in `load_screen` (call it off the loop)."""

from .base import Filter, Hit
from .screen import RoomList, Screen, load_screen
from .wordlist import WordList, parse_list

__all__ = ["Filter", "Hit", "RoomList", "Screen", "WordList", "load_screen", "parse_list"]
