"""HTTP and WebSocket endpoints of the hub."""
