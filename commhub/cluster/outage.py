"""Redis trouble as a part with a local fallback sees it (the shared limits, the shared
translation cache): after a failure the part leaves Redis alone for `retry` seconds and uses
its own state; each outage is logged once, when it starts and when it ends."""

from __future__ import annotations

import logging
import time


class Outage:
    def __init__(self, log: logging.Logger, what: str, meanwhile: str, retry: float) -> None:
        self.log = log
        self.what = what  # "the shared translation cache"
        self.meanwhile = meanwhile  # "translating with the local cache only"
        self.retry = retry
        self.errors = 0
        self._until = 0.0  # monotonic; Redis is left alone before it
        self._down = False

    @property
    def available(self) -> bool:
        """False while Redis is left alone after a failure."""
        return time.monotonic() >= self._until

    def failed(self, exc: Exception) -> None:
        self.errors += 1
        self._until = time.monotonic() + self.retry
        if not self._down:
            self._down = True
            self.log.warning(
                "%s unreachable (%s: %s); %s, trying Redis again every %g s",
                self.what, type(exc).__name__, exc, self.meanwhile, self.retry,
            )  # fmt: skip

    def answered(self) -> None:
        if self._down:
            self._down = False
            self.log.info("%s reachable again", self.what)
