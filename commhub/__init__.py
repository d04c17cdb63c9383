"""commhub: a self-hosted real-time communication and translation hub."""

__version__ = "0.1.0"
