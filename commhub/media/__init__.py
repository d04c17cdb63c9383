"""WebRTC media through the hub: peer sessions, SFU relay, P2P brokering, audio taps."""

from commhub.media.manager import Media
from commhub.media.tap import AudioTapCallback, TapTrack
from commhub.rtc.ice import IcePolicy, policy_scope

__all__ = ["AudioTapCallback", "IcePolicy", "Media", "TapTrack", "policy_scope"]
