"""Prometheus metrics of the captions pipeline (one instance per registry, shared by streams)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)


class CaptionMetrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, prefix: str = "commhub_captions"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.active_streams = Gauge(f"{prefix}_active_streams", "Open caption streams", registry=r)
        self.stage_seconds = Histogram(
            f"{prefix}_stage_seconds",
            "Wall time per pipeline stage: resample and gate per pushed frame, recognize per "
            "decode job, finalize from the end of speech being detected to the final caption",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.partials = Counter(f"{prefix}_partials", "Partial captions emitted", registry=r)
        self.dropped_partials = Counter(
            f"{prefix}_dropped_partials",
            "Partial captions skipped because decoding fell behind (audio was merged)",
            registry=r,
        )
        self.finals = Counter(f"{prefix}_finals", "Final captions emitted", registry=r)
        self.dropped_utterances = Counter(
            f"{prefix}_dropped_utterances",
            "Utterances not recognised because a stream's backlog was over its bound",
            registry=r,
        )
        self.shed_seconds = Counter(
            f"{prefix}_shed_seconds",
            "Queued speech thrown away (not decoded) to hold the backlog or lag bound",
            registry=r,
        )
        self.episodes = Counter(
            f"{prefix}_degraded_episodes",
            "Degradation episodes of caption streams (each told to the room once)",
            registry=r,
        )
        self.fast_utterances = Counter(
            f"{prefix}_fast_utterances",
            "Utterances decoded with the fast decoder preset because the node was strained",
            registry=r,
        )
        self.refused = Counter(
            f"{prefix}_refused",
            "Published audio tracks refused captions over the stream limit (busy)",
            registry=r,
        )
        self.warm_recognizers = Gauge(
            f"{prefix}_warm_recognizers",
            "Idle recognizers ready for the next speaker, warmed before anyone spoke",
            ["language", "preset"],
            registry=r,
        )
        self.warm_up_cpu = Gauge(
            f"{prefix}_warm_up_cpu_seconds",
            "CPU seconds spent warming recognizers (a low-priority thread), since start",
            registry=r,
        )
        self.audio_seconds = Counter(
            f"{prefix}_audio_seconds", "Audio received by caption streams", registry=r
        )
        self.recognized_seconds = Counter(
            f"{prefix}_recognized_audio_seconds", "Speech audio decoded by recognizers", registry=r
        )
        self.realtime_factor = Histogram(
            f"{prefix}_realtime_factor",
            "Recognizer wall time / audio duration, per decode job",
            buckets=_RTF_BUCKETS,
            registry=r,
        )


_default: CaptionMetrics | None = None


def default_metrics() -> CaptionMetrics:
    """A process-wide instance on its own registry, for streams given none."""
    global _default
    if _default is None:
        _default = CaptionMetrics()
    return _default
