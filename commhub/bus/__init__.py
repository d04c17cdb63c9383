"""How room events reach participants. Nothing else knows the transport."""

from commhub.bus.base import Bus, Inbox
from commhub.bus.memory import MemoryBus

__all__ = ["Bus", "Inbox", "MemoryBus"]
