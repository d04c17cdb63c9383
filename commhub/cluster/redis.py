"""One Redis client per node, and errors that say what to fix."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError


class ClusterError(RuntimeError):
    """Redis cannot be reached or used: the message names the URL (without password)."""


def redacted(url: str) -> str:
    """The URL as it may be logged: a password becomes ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def client(url: str, timeout: float = 3.0) -> Redis:
    # a few quick retries hide a blip; longer outages are the caller's (backoff, fallback)
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        health_check_interval=30,
    )


async def connect(url: str, timeout: float = 3.0) -> Redis:
    """A client that has answered PING, or ClusterError."""
    redis = client(url, timeout)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        raise ClusterError(f"Redis at {redacted(url)} is unreachable: {exc}") from None
    return redis
