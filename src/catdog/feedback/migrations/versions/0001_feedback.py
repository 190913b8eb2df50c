"""The feedback table.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False, server_default=""),
        sa.Column("version", sa.String(64), nullable=False, server_default=""),
        sa.Column("answer", sa.String(64), nullable=False),
        sa.Column("correct", sa.String(64), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("photo_format", sa.String(8), nullable=True),
        sa.Column("photo_size", sa.Integer(), nullable=True),
        sa.Column("photo", sa.LargeBinary(), nullable=True),
        sa.UniqueConstraint("sha256", "model", "version", name="uq_feedback_item"),
    )
    op.create_index("ix_feedback_updated_at", "feedback", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_feedback_updated_at", table_name="feedback")
    op.drop_table("feedback")
