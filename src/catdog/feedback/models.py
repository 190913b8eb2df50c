"""The feedback table, as SQLAlchemy 2 Core/ORM metadata (the migrations create it; this mirrors them).

One row per *item a person corrected*: the key is the photo's SHA-256 plus the name and version
of the model whose answer they saw (``uq_feedback_item``). A second post for the same key updates
that row (the correction, the probabilities, whether the photo is shared) instead of adding one:
the same photo judged again by the same model is the same answer, judged again. No client
address, user name or file name is stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, DateTime, Index, Integer, LargeBinary, String, Table, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from catdog.feedback import LABEL_LENGTH, MODEL_NAME_LENGTH, VERSION_LENGTH


class Base(DeclarativeBase):
    pass


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("sha256", "model", "version", name="uq_feedback_item"),
        Index("ix_feedback_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: UTC, without a time zone (the same on SQLite and PostgreSQL).
    created_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    #: The model whose answer was corrected ('' if nobody said: then the server's own model).
    model: Mapped[str] = mapped_column(String(MODEL_NAME_LENGTH), nullable=False, default="")
    version: Mapped[str] = mapped_column(String(VERSION_LENGTH), nullable=False, default="")
    answer: Mapped[str] = mapped_column(String(LABEL_LENGTH), nullable=False)
    correct: Mapped[str] = mapped_column(String(LABEL_LENGTH), nullable=False)
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON(), nullable=True)
    #: Set only when the person shared the photo: "jpeg", "png", "webp", "gif" or "bmp".
    photo_format: Mapped[str | None] = mapped_column(String(8), nullable=True)
    photo_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: The shared photo's bytes, exactly as uploaded (None when photos live in a folder, or
    #: when it was not shared). Deferred: listing entries never loads photos.
    photo: Mapped[bytes | None] = deferred(mapped_column(LargeBinary(), nullable=True))

    @property
    def corrected(self) -> bool:
        return self.answer != self.correct


metadata = Base.metadata
#: The table itself, for Core statements (upserts, deletes, summaries).
FEEDBACK = cast(Table, Feedback.__table__)
