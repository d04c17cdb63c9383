"""the first schema: rooms, chat, captions, reports, bans, events

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bans",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("until", sa.Float(), nullable=True),
        sa.Column("by", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("lifted_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bans")),
    )
    with op.batch_alter_table("bans", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bans_room_identity"), ["room", "identity"], unique=False
        )

    op.create_table(
        "captions",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("participant", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("lang", sa.String(length=35), nullable=False),
        sa.Column("start", sa.Float(), nullable=False),
        sa.Column("end", sa.Float(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_captions")),
    )
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_captions_identity"), ["identity"], unique=False)
        batch_op.create_index(batch_op.f("ix_captions_room_seq"), ["room", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_captions_ts"), ["ts"], unique=False)

    op.create_table(
        "chat",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("participant", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("lang", sa.String(length=35), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("recorded", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_chat")),
        sa.UniqueConstraint("chat_id", name=op.f("uq_chat_chat_id")),
    )
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_identity"), ["identity"], unique=False)
        batch_op.create_index(batch_op.f("ix_chat_room_seq"), ["room", "seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_chat_ts"), ["ts"], unique=False)

    op.create_table(
        "moderation_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_moderation_events")),
    )
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_moderation_events_identity"), ["identity"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_moderation_events_room"), ["room"], unique=False)
        batch_op.create_index(batch_op.f("ix_moderation_events_ts"), ["ts"], unique=False)

    op.create_table(
        "reports",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reporter", sa.String(length=128), nullable=True),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("resolved_at", sa.Float(), nullable=True),
        sa.Column("resolved_by", sa.String(length=128), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_reporter"), ["reporter"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_room"), ["room"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_reports_subject"), ["subject"], unique=False)

    op.create_table(
        "rooms",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("recording", sa.Boolean(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rooms")),
    )
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_store_meta")),
    )
    op.create_table(
        "caption_translations",
        sa.Column(
            "caption_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("lang", sa.String(length=35), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["caption_seq"],
            ["captions.seq"],
            name=op.f("fk_caption_translations_caption_seq_captions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("caption_seq", "lang", name=op.f("pk_caption_translations")),
    )
    op.create_table(
        "chat_translations",
        sa.Column("chat_id", sa.String(length=64), nullable=False),
        sa.Column("lang", sa.String(length=35), nullable=False),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["chat.chat_id"],
            name=op.f("fk_chat_translations_chat_id_chat"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chat_id", "lang", name=op.f("pk_chat_translations")),
    )


def downgrade() -> None:
    op.drop_table("chat_translations")
    op.drop_table("caption_translations")
    op.drop_table("store_meta")
    op.drop_table("rooms")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_subject"))
        batch_op.drop_index(batch_op.f("ix_reports_status"))
        batch_op.drop_index(batch_op.f("ix_reports_room"))
        batch_op.drop_index(batch_op.f("ix_reports_reporter"))
        batch_op.drop_index(batch_op.f("ix_reports_created_at"))

    op.drop_table("reports")
    with op.batch_alter_table("moderation_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_moderation_events_ts"))
        batch_op.drop_index(batch_op.f("ix_moderation_events_room"))
        batch_op.drop_index(batch_op.f("ix_moderation_events_identity"))

    op.drop_table("moderation_events")
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_ts"))
        batch_op.drop_index(batch_op.f("ix_chat_room_seq"))
        batch_op.drop_index(batch_op.f("ix_chat_identity"))

    op.drop_table("chat")
    with op.batch_alter_table("captions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_captions_ts"))
        batch_op.drop_index(batch_op.f("ix_captions_room_seq"))
        batch_op.drop_index(batch_op.f("ix_captions_identity"))

    op.drop_table("captions")
    with op.batch_alter_table("bans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bans_room_identity"))

    op.drop_table("bans")
