"""The store's tables. Portable types only (String, Text, Float, Boolean, JSON, Integer), so
the same schema runs on SQLite (the embedded default) and PostgreSQL (several hubs).

Messages are kept as the hub sent them (`message` JSON) beside the columns that queries,
retention and erasure need, so that what a newcomer is shown after a restart is exactly what
it would have been shown before."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# Stable constraint names: Alembic can alter them later on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# An auto-incrementing 64-bit key (SQLite only auto-increments INTEGER PRIMARY KEY).
Serial = BigInteger().with_variant(Integer(), "sqlite")

ROOM = 128  # auth.valid_room_name
IDENTITY = 128  # auth: identity 1..128 characters
NAME = 80
ID = 64
LANG = 35

meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

rooms = Table(
    "rooms",
    metadata,
    Column("name", String(ROOM), primary_key=True),
    Column("recording", Boolean, nullable=True),  # None: the hub's setting decides
    Column("updated_at", Float, nullable=False),
)

chat = Table(
    "chat",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("chat_id", String(ID), nullable=False, unique=True),
    Column("room", String(ROOM), nullable=False),
    Column("participant", String(ID), nullable=False),
    Column("identity", String(IDENTITY), nullable=False, index=True),
    Column("name", String(NAME), nullable=False),
    Column("lang", String(LANG), nullable=False),
    Column("text", Text, nullable=False),
    Column("ts", Float, nullable=False, index=True),
    Column("message", JSON, nullable=False),
    Column("recorded", Boolean, nullable=False),  # sent while the room recorded: transcript
    Index(None, "room", "seq"),
)

chat_translations = Table(
    "chat_translations",
    metadata,
    Column(
        "chat_id",
        String(ID),
        ForeignKey("chat.chat_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("lang", String(LANG), primary_key=True),
    Column("info", JSON, nullable=False),  # the wire `translation` readers of lang got
)

captions = Table(
    "captions",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("room", String(ROOM), nullable=False),
    Column("segment", String(ID), nullable=False),
    Column("participant", String(ID), nullable=False),
    Column("identity", String(IDENTITY), nullable=False, index=True),
    Column("name", String(NAME), nullable=False),
    Column("lang", String(LANG), nullable=False),
    Column("start", Float, nullable=False),  # wall-clock seconds (track_start + start)
    Column("end", Float, nullable=False),
    Column("ts", Float, nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("message", JSON, nullable=False),
    Index(None, "room", "seq"),
)

caption_translations = Table(
    "caption_translations",
    metadata,
    Column(
        "caption_seq",
        Serial,
        ForeignKey("captions.seq", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("lang", String(LANG), primary_key=True),
    Column("text", Text, nullable=True),  # None: not translated (info says why)
    Column("info", JSON, nullable=False),
)

reports = Table(
    "reports",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("room", String(ROOM), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),  # open | resolved
    Column("reporter", String(IDENTITY), nullable=True, index=True),
    Column("subject", String(IDENTITY), nullable=True, index=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("resolved_at", Float, nullable=True),
    Column("resolved_by", String(IDENTITY), nullable=True),
    Column("resolution", Text, nullable=True),
    Column("data", JSON, nullable=False),  # the report as filed, evidence included
)

bans = Table(
    "bans",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("room", String(ROOM), nullable=False),
    Column("identity", String(IDENTITY), nullable=False),
    Column("until", Float, nullable=True),  # None: until lifted
    Column("by", String(IDENTITY), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("lifted_at", Float, nullable=True),
    Index(None, "room", "identity"),
)

events = Table(
    "moderation_events",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("room", String(ROOM), nullable=False, index=True),
    Column("kind", String(64), nullable=False),
    Column("identity", String(IDENTITY), nullable=True, index=True),
    Column("ts", Float, nullable=False, index=True),
    Column("data", JSON, nullable=False),
)
