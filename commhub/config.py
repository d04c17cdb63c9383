"""Settings: one validated object built from defaults, COMMHUB_* variables and CLI flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class SettingsError(ValueError):
    """A bad setting: the message names it and says what is expected."""


def _ice_servers_default() -> list[dict[str, Any]]:
    return []


def _explicit_labels() -> list[str]:
    # imported here: the moderation package may import config
    from commhub.moderation.labels import EXPLICIT_LABELS

    return list(EXPLICIT_LABELS)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    models_dir: Path = Path("models/installed")
    secret: str = ""  # empty: generated once into data_dir/secret
    issuer: str = "commhub"
    token_leeway: float = 10.0  # seconds of clock skew accepted on exp/nbf
    max_message_bytes: int = 64 * 1024
    rate_limit: float = 20.0  # messages per second, sustained
    rate_burst: int = 40
    flood_strikes: int = 20  # rate-limited messages in a row before the socket is closed
    room_capacity: int = 50
    empty_room_timeout: float = 60.0
    chat_history: int = 50
    heartbeat: float = 15.0  # WebSocket ping interval; a silent peer is dropped after 1.5x
    join_timeout: float = 10.0
    shutdown_timeout: float = 5.0
    send_buffer: int = 4 * 1024 * 1024  # unsent bytes per connection before it is dropped
    ice_servers: list[dict[str, Any]] = field(default_factory=_ice_servers_default)
    # media: addresses the hub advertises in ICE (empty: all interfaces; aioice skips
    # loopback), the UDP port range of its host candidates (0/0: any), room mode default
    ice_host_addresses: list[str] = field(default_factory=list)
    udp_port_min: int = 0
    udp_port_max: int = 0
    # auto: p2p for two p2p-capable clients, else sfu (always sfu while imagery is on); sfu; p2p
    room_mode: str = "auto"
    audio_jitter_prefetch: int = 1  # audio packets (20 ms each) held before playout; aiortc: 4
    # Later audio packets after which a missing one is lost, not late (audio has no NACK): one
    # overtaken by two others still plays; a loss costs 40 ms of lag, not aiortc's 280 for
    # good. 0: wait until the buffer is full, as aiortc does.
    audio_loss_patience: int = 2
    media_stall_timeout: float = 10.0  # seconds an unmuted published track may stay silent
    log_level: str = "info"
    captions: bool = True  # run live captions on every published audio track
    caption_budget: int = 0  # concurrently decoding recognizers per node; 0 = 2 per CPU
    caption_end_silence_ms: int = 400  # silence that ends an utterance (then the final)
    caption_preload: list[str] = field(default_factory=lambda: ["ko", "en"])  # load at start
    caption_phrases: dict[str, list[str]] = field(default_factory=dict)  # lang -> grammar
    speech_engines: dict[str, str] = field(default_factory=dict)  # lang -> vosk|pocketsphinx
    translation: bool = True  # translate chat and final captions into each reader's language
    translate_partials: bool = False  # also partial captions, by their stable prefix (CPU)
    translate_engines: dict[str, str] = field(default_factory=dict)  # "en-es" -> apertium|argos
    translate_timeout: float = 10.0
    translate_cache: int = 10000  # translations kept (LRU), shared by all rooms
    translate_max_chars: int = 2000  # longer texts are delivered untranslated (too_long)
    translate_queue: int = 256  # translations waiting for an engine; beyond: failed (busy)
    # limits against hostile or broken clients (docs/THREAT_MODEL.md)
    max_connections_per_ip: int = 200  # open signalling sockets per client address
    max_connections_per_identity: int = 4  # open signalling sockets per identity and room
    join_rate: float = 20.0  # upgrades per second per client address, sustained
    join_burst: int = 100
    byte_rate: int = 256 * 1024  # bytes per second per connection, sustained (all frames)
    byte_burst: int = 1024 * 1024
    max_json_depth: int = 16  # nesting of arrays and objects in a client message
    max_sdp_bytes: int = 32 * 1024  # an SDP in offer/answer
    max_tracks_per_participant: int = 4  # published tracks (microphone, camera, screen...)
    max_tracks_per_room: int = 32
    max_track_meta: int = 16  # `track` metadata kept per participant for tracks not yet seen
    caption_max_backlog: float = 20.0  # seconds of speech queued per stream before shedding
    admin_token_max_ttl: float = 7 * 86400  # longest ttl the admin API mints
    end_session_at_expiry: bool = False  # close a connection when its token expires
    check_outgoing: bool = False  # validate every server message against its schema (tests)
    # -- store --
    store: bool = True  # keep chat, transcripts, reports and bans in a database (else memory)
    database_url: str = ""  # SQLAlchemy async URL; empty: sqlite under data_dir/commhub.db
    store_queue: int = 1000  # writes waiting for a commit before chat senders are held back
    store_batch: int = 256  # writes committed together at most (group commit)
    store_busy_timeout: float = 5.0  # seconds a write waits for a locked database
    recording: bool = False  # rooms record their caption transcript (rooms may override)
    # -- transcripts and retention --
    retention_days: float = 0.0  # stored chat, captions, reports, evidence kept; 0 = forever
    retention_interval: float = 3600.0  # seconds between purges of what is older
    # -- moderation: text --
    moderation: bool = True  # screen chat, captions and translations with the text filters
    moderation_action: str = "mask"  # what a hit does: mask, drop or warn
    moderation_strikes: int = 3  # moderated messages that mute the sender; 0: never
    moderation_score: float = 0.9  # alt-profanity-check (en) threshold; 0: the model is off
    moderation_wordlist: str = ""  # the operator's list file for every room (empty: none)
    # -- imagery: sample published video, block tracks the detector flags --
    imagery: bool = True  # sample and classify every video track relayed by the hub
    imagery_interval: float = 3.0  # seconds between samples of one track (a key frame each)
    imagery_labels: list[str] = field(default_factory=_explicit_labels)
    imagery_threshold: float = 0.5  # a blocked label's detector score that blocks the track
    imagery_cpu_budget: float = 0.25  # cores the sampling may use, node-wide
    imagery_queue: int = 2  # samples waiting for or on the worker; more are dropped
    # -- reports and moderator actions --
    report_evidence_lines: int = 20  # chat lines and final captions kept per participant
    report_evidence_participants: int = 4096  # participants whose lines are kept (oldest go)
    report_limit: int = 5  # reports one identity may file in a room per report_window
    report_window: float = 600.0  # seconds
    # -- desks --
    desk_grace: float = 60.0  # seconds a dropped visitor keeps its place in a desk's queue
    desk_agent_grace: float = 15.0  # seconds a dropped agent keeps its sessions
    desk_visitor_ttl: float = 3600.0  # lifetime of the visitor token a desk's link mints
    desk_session_ttl: float = 4 * 3600.0  # lifetime of a session's room tokens
    desk_default_handle_time: float = 300.0  # the wait estimate before a desk has handled anyone
    desk_max_queue: int = 100  # a new desk's max_queue
    # -- capacity --
    # caption streams per node; one more speaker gets caption_unavailable (busy) until a
    # stream ends, instead of slowing every speaker; 0 = 4 per CPU
    caption_max_streams: int = 0
    # Vosk decoder preset: default, or fast (beam 8, max-active 1000: ~25 % less CPU)
    caption_decoder: str = "default"
    # from this many open caption streams on, new streams use the fast preset (a second
    # copy of the model in memory, loaded off the loop when first needed); 0 = never
    caption_fast_from: int = 0
    # no final caption later than this many seconds after its utterance ended: past
    # capacity a stream's partials stop and its oldest speech is shed (counted, the room
    # told once per episode); 0 = unbounded (only caption_max_backlog holds)
    caption_max_lag: float = 2.0
    # while a stream lags, new utterances decode with the fast preset (its model copy is
    # loaded off the loop the first time; preloaded when caption_fast_from asks for it)
    caption_fast_auto: bool = True
    # load that copy at start-up (seconds of a core and several hundred MiB), for nodes
    # expected to run past capacity, instead of the first time a stream lags
    caption_fast_preload: bool = False
    # warm idle recognizers kept per Vosk model, so that new speakers' first sentences are
    # not decoded cold (5x the CPU); each costs 6-8 CPU-s once (a low-priority thread) and
    # memory (README "Performance"); 0 = none
    caption_warm_recognizers: int = 8
    # -- several nodes: COMMHUB_REDIS_URL turns it on (docs in README "Several nodes") --
    redis_url: str = ""  # redis://host:port/db; empty: one node, nothing shared
    redis_prefix: str = "commhub"  # the keys' prefix (several clusters may share one Redis)
    node_id: str = ""  # this node's name in the registry; empty: host-port-random
    node_url: str = ""  # the base URL clients reach this node at; empty: http://host:port
    lease_ttl: float = 10.0  # seconds a silent node keeps its rooms and its registry entry
    drain_timeout: float = 30.0  # seconds a stopping node's rooms run before the hand-over
    translate_cache_shared: bool = True  # with Redis: translations cached there for every node

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Defaults, then COMMHUB_<NAME> variables, then overrides (flags); validated once."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(f"COMMHUB_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name not in {f.name for f in fields(cls)}:
                raise SettingsError(f"unknown setting {name!r}")
            ftype = next(f.type for f in fields(cls) if f.name == name)
            values[name] = _coerce(name, ftype, value) if isinstance(value, str) else value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        def need(ok: bool, name: str, what: str) -> None:
            if not ok:
                value = getattr(self, name)
                raise SettingsError(f"setting {name} (COMMHUB_{name.upper()}) = {value!r}: {what}")

        need(0 <= self.port <= 65535, "port", "expected 0..65535")
        need(bool(self.host), "host", "expected a host name or address")
        need(
            1024 <= self.max_message_bytes <= 16 * 1024 * 1024,
            "max_message_bytes",
            "expected 1024..16777216",
        )
        need(self.rate_limit > 0, "rate_limit", "expected > 0 messages per second")
        need(self.rate_burst >= 1, "rate_burst", "expected >= 1")
        need(self.flood_strikes >= 1, "flood_strikes", "expected >= 1")
        need(1 <= self.room_capacity <= 10000, "room_capacity", "expected 1..10000")
        need(self.empty_room_timeout >= 0, "empty_room_timeout", "expected >= 0 seconds")
        need(0 <= self.chat_history <= 10000, "chat_history", "expected 0..10000")
        need(self.heartbeat > 0, "heartbeat", "expected > 0 seconds")
        need(self.join_timeout > 0, "join_timeout", "expected > 0 seconds")
        need(self.shutdown_timeout > 0, "shutdown_timeout", "expected > 0 seconds")
        need(self.send_buffer >= 65536, "send_buffer", "expected >= 65536 bytes")
        for name in (
            "translate_queue", "max_connections_per_ip", "max_connections_per_identity",
            "join_burst", "byte_burst", "max_json_depth", "max_tracks_per_participant",
            "max_tracks_per_room", "max_track_meta",
        ):  # fmt: skip
            need(getattr(self, name) >= 1, name, "expected >= 1")
        for name in ("join_rate", "byte_rate", "caption_max_backlog", "admin_token_max_ttl"):
            need(getattr(self, name) > 0, name, "expected > 0")
        for name in ("report_evidence_lines", "report_evidence_participants", "report_limit"):
            need(getattr(self, name) >= 1, name, "expected >= 1")
        need(self.report_window > 0, "report_window", "expected > 0 seconds")
        need(self.caption_max_streams >= 0, "caption_max_streams", "expected >= 0 (0 = auto)")
        need(
            self.caption_decoder in {"default", "fast"},
            "caption_decoder",
            "expected default or fast",
        )
        need(self.caption_warm_recognizers >= 0, "caption_warm_recognizers", "expected >= 0")
        need(self.caption_fast_from >= 0, "caption_fast_from", "expected >= 0 (0 = never)")
        need(0 <= self.caption_max_lag <= 3600, "caption_max_lag", "expected 0..3600 seconds")
        need(self.max_sdp_bytes >= 1024, "max_sdp_bytes", "expected >= 1024 bytes")
        need(self.token_leeway >= 0, "token_leeway", "expected >= 0 seconds")
        for name in ("desk_grace", "desk_agent_grace"):
            need(0 <= getattr(self, name) <= 86400, name, "expected 0..86400 seconds")
        for name in ("desk_visitor_ttl", "desk_session_ttl", "desk_default_handle_time"):
            need(0 < getattr(self, name) <= 7 * 86400, name, "expected (0, 604800] seconds")
        need(1 <= self.desk_max_queue <= 10000, "desk_max_queue", "expected 1..10000")
        need(
            0 <= self.retention_days < 1e6,
            "retention_days",
            "expected >= 0 days (0 = keep forever)",
        )
        need(0 < self.retention_interval < 1e9, "retention_interval", "expected > 0 seconds")
        need(
            all(isinstance(a, str) and _ip(a) for a in self.ice_host_addresses),
            "ice_host_addresses",
            'expected a JSON list of IP addresses like ["203.0.113.7"]',
        )
        need(
            (self.udp_port_min, self.udp_port_max) == (0, 0)
            or 1024 <= self.udp_port_min <= self.udp_port_max <= 65535,
            "udp_port_min",
            f"expected 1024 <= udp_port_min <= udp_port_max ({self.udp_port_max}) <= 65535, "
            "or both 0",
        )
        need(self.room_mode in {"auto", "sfu", "p2p"}, "room_mode", "expected auto, sfu or p2p")
        need(1 <= self.audio_jitter_prefetch <= 16, "audio_jitter_prefetch", "expected 1..16")
        need(0 <= self.audio_loss_patience <= 14, "audio_loss_patience", "expected 0..14")
        need(self.media_stall_timeout > 0, "media_stall_timeout", "expected > 0 seconds")
        need(
            self.log_level in {"debug", "info", "warning", "error"},
            "log_level",
            "expected debug, info, warning or error",
        )
        need(
            self.secret == "" or len(self.secret) >= 32,
            "secret",
            "expected at least 32 characters (or unset to generate one)",
        )
        need(
            all(isinstance(s, dict) and isinstance(s.get("urls"), list) for s in self.ice_servers),
            "ice_servers",
            'expected a JSON list like [{"urls": ["stun:stun.example.org:3478"]}]',
        )

        need(
            self.moderation_action in {"mask", "drop", "warn"},
            "moderation_action",
            "expected mask, drop or warn",
        )
        need(self.moderation_strikes >= 0, "moderation_strikes", "expected >= 0 (0: never)")
        need(0 <= self.moderation_score <= 1, "moderation_score", "expected 0..1 (0: off)")
        need(
            not self.moderation_wordlist or Path(self.moderation_wordlist).is_file(),
            "moderation_wordlist",
            "expected a readable list file (one term per line) or empty",
        )
        need(self.store_queue >= 1, "store_queue", "expected >= 1")
        need(1 <= self.store_batch <= 10000, "store_batch", "expected 1..10000")
        need(self.store_busy_timeout >= 0, "store_busy_timeout", "expected >= 0 seconds")
        need(
            self.database_url == "" or "://" in self.database_url,
            "database_url",
            "expected an SQLAlchemy URL like sqlite+aiosqlite:///path/commhub.db",
        )
        self._validate_imagery(need)
        self._validate_cluster(need)

    def _validate_cluster(self, need: Any) -> None:
        need(
            self.redis_url == "" or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "redis_url",
            "expected a URL like redis://127.0.0.1:6379/0 (or empty: one node)",
        )
        need(
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", self.redis_prefix) is not None,
            "redis_prefix",
            "expected 1..64 letters, digits, '.', '_' or '-'",
        )
        need(
            self.node_id == "" or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", self.node_id),
            "node_id",
            "expected 1..64 letters, digits, '.', '_' or '-' (or empty: generated)",
        )
        need(
            self.node_url == "" or re.fullmatch(r"https?://[^\s/?#]+", self.node_url),
            "node_url",
            "expected a base URL like https://hub-2.example.org (no path)",
        )
        need(
            self.redis_url == "" or self.node_url != "" or self.port != 0,
            "node_url",
            "several nodes: set node_url (the URL clients reach this node at) or a fixed port",
        )
        need(1 <= self.lease_ttl <= 600, "lease_ttl", "expected 1..600 seconds")
        need(0 <= self.drain_timeout <= 86400, "drain_timeout", "expected 0..86400 seconds")
        need(
            self.redis_url == "" or self.secret != "",
            "secret",
            "several nodes (redis_url set) must share one signing secret: set COMMHUB_SECRET "
            "to the same value on every node",
        )

    def _validate_imagery(self, need: Any) -> None:
        from commhub.moderation.labels import NUDENET_LABELS

        need(
            isinstance(self.imagery_interval, (int, float))
            and 0.5 <= self.imagery_interval <= 3600,
            "imagery_interval",
            "expected 0.5..3600 seconds",
        )
        labels = self.imagery_labels
        unknown = [x for x in labels if x not in NUDENET_LABELS] if isinstance(labels, list) else []
        need(
            isinstance(labels, list) and bool(labels) and not unknown,
            "imagery_labels",
            f"expected a non-empty JSON list of detector labels (unknown: {unknown}); "
            f"known: {', '.join(NUDENET_LABELS)}",
        )
        need(
            isinstance(self.imagery_threshold, (int, float)) and 0 < self.imagery_threshold <= 1,
            "imagery_threshold",
            "expected a score in (0, 1]",
        )
        need(
            isinstance(self.imagery_cpu_budget, (int, float)) and 0 < self.imagery_cpu_budget <= 64,
            "imagery_cpu_budget",
            "expected > 0 cores (a fraction of one core is fine, e.g. 0.25)",
        )
        need(
            isinstance(self.imagery_queue, int) and 1 <= self.imagery_queue <= 64,
            "imagery_queue",
            "expected 1..64 samples",
        )

    def replace(self, **changes: Any) -> Settings:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def resolve_secret(self) -> tuple[str, bool]:
        """The signing secret, and whether it was generated just now (dev mode)."""
        if self.secret:
            return self.secret, False
        path = self.data_dir / "secret"
        if path.exists():
            return path.read_text("utf-8").strip(), False
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return value, True


def _ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _coerce(name: str, ftype: Any, raw: str) -> Any:
    kind = ftype if isinstance(ftype, str) else getattr(ftype, "__name__", str(ftype))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError("not a boolean")
            return raw.lower() in {"1", "true", "yes", "on"}
        if kind.startswith(("list", "dict")):
            value = json.loads(raw)
            want = list if kind.startswith("list") else dict
            if not isinstance(value, want):
                raise ValueError(f"not a JSON {want.__name__}")
            return value
    except ValueError as exc:
        raise SettingsError(
            f"setting {name} (COMMHUB_{name.upper()}) = {raw!r}: expected {kind} ({exc})"
        ) from None
    return raw
