"""What the hub's media and the SDK share about aiortc: the ICE network policy and the one
module (compat) that touches aiortc's and aioice's private state."""
