"""Which engine translates a pair: the best installed one, or two legs through English."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PIVOT = "en"
# Neural models beat rule-based ones wherever both exist; unknown engines rank last.
ENGINE_RANK = {"argos": 0, "apertium": 1}

Leg = tuple[str, str, str]  # (engine, source, target)


@dataclass(frozen=True)
class Route:
    legs: tuple[Leg, ...]

    @property
    def label(self) -> str:
        engines = list(dict.fromkeys(leg[0] for leg in self.legs))
        if len(self.legs) == 1:
            return engines[0]
        return "+".join(engines) + f" via {PIVOT}"


class Router:
    def __init__(
        self,
        pairs: Mapping[str, set[tuple[str, str]]],
        preferences: Mapping[str, str] | None = None,
    ) -> None:
        self._order = sorted(pairs, key=lambda name: ENGINE_RANK.get(name, len(ENGINE_RANK)))
        self._pairs = {name: set(p) for name, p in pairs.items()}
        self._preferences = dict(preferences or {})

    def direct(self, source: str, target: str) -> str | None:
        preferred = self._preferences.get(f"{source}-{target}")
        if preferred is not None and (source, target) in self._pairs.get(preferred, set()):
            return preferred
        for name in self._order:
            if (source, target) in self._pairs[name]:
                return name
        return None

    def route(self, source: str, target: str) -> Route | None:
        engine = self.direct(source, target)
        if engine is not None:
            return Route(((engine, source, target),))
        if PIVOT in (source, target):
            return None
        first, second = self.direct(source, PIVOT), self.direct(PIVOT, target)
        if first is None or second is None:
            return None
        return Route(((first, source, PIVOT), (second, PIVOT, target)))

    def languages(self) -> set[str]:
        return {code for pairs in self._pairs.values() for pair in pairs for code in pair}

    def matrix(self) -> dict[tuple[str, str], str]:
        codes = sorted(self.languages())
        out: dict[tuple[str, str], str] = {}
        for source in codes:
            for target in codes:
                if source != target and (route := self.route(source, target)) is not None:
                    out[(source, target)] = route.label
        return out
