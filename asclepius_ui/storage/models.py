"""The ORM tables of the ratings database (SQLAlchemy declarative models), shared by the repository and the
Alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {"ix": "ix_%(column_0_label)s", "uq": "uq_%(table_name)s_%(column_0_name)s",
          "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s", "pk": "pk_%(table_name)s"}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Comparison(Base):
    """One blind A/B vote; ``model_a`` is the contender shown on the left as Model A."""

    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    rater: Mapped[str] = mapped_column(String(200))
    model_a: Mapped[str] = mapped_column(String(500))
    model_b: Mapped[str] = mapped_column(String(500))
    revision_a: Mapped[str | None] = mapped_column(String(500))
    revision_b: Mapped[str | None] = mapped_column(String(500))
    swapped: Mapped[bool] = mapped_column(Boolean, default=False)
    winner: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    task: Mapped[str | None] = mapped_column(String(200))
    instruction: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    answer_a: Mapped[str] = mapped_column(Text)
    answer_b: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict | None] = mapped_column(JSON)
    seconds_a: Mapped[float | None] = mapped_column(Float)
    seconds_b: Mapped[float | None] = mapped_column(Float)
    shown_at: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[str] = mapped_column(String(40))
    rubric_version: Mapped[str] = mapped_column(String(64))


class Rating(Base):
    """A 1-4 rating of one answer with a snapshot of everything that was judged."""

    __tablename__ = "ratings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16))
    rater: Mapped[str] = mapped_column(String(200))
    model_id: Mapped[str] = mapped_column(String(500))
    model_revision: Mapped[str | None] = mapped_column(String(500))
    precision: Mapped[str | None] = mapped_column(String(64))
    template: Mapped[str | None] = mapped_column(String(64))
    task: Mapped[str | None] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text)
    instruction: Mapped[str] = mapped_column(Text)
    prompt: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict | None] = mapped_column(JSON)
    started_at: Mapped[str | None] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40))
    generation_seconds: Mapped[float | None] = mapped_column(Float)
    new_tokens: Mapped[int | None] = mapped_column(Integer)
    score: Mapped[int] = mapped_column(Integer)
    tags: Mapped[list | None] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(40))
    rubric_version: Mapped[str] = mapped_column(String(64))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("ratings.id"))
    comparison_id: Mapped[int | None] = mapped_column(ForeignKey("comparisons.id"))
    side: Mapped[str | None] = mapped_column(String(1))


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    overlap: Mapped[int] = mapped_column(Integer)
    models: Mapped[list] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[str] = mapped_column(String(40))
    rubric_version: Mapped[str] = mapped_column(String(64))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    n_items: Mapped[int] = mapped_column(Integer, server_default="0")
    ready: Mapped[bool] = mapped_column(Boolean, server_default=true())  # False while an import is under way
    show_findings: Mapped[bool] = mapped_column(Boolean, server_default=false())  # raters see the answer check


class AppSecret(Base):
    """Random per-database secrets (e.g. the key that signs what a page keeps in the browser)."""

    __tablename__ = "app_secrets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))


class StudyItem(Base):
    __tablename__ = "study_items"
    __table_args__ = (UniqueConstraint("study_id", "ext_id"), Index("ix_study_items_next", "study_id", "coverage",
                                                                     "position"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    ext_id: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(String(200))
    coverage: Mapped[int] = mapped_column(Integer, server_default="0")  # open + done assignments


class StudyAnswer(Base):
    __tablename__ = "study_answers"
    __table_args__ = (UniqueConstraint("item_id", "model"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("study_items.id"), index=True)
    model: Mapped[str] = mapped_column(String(500))
    answer: Mapped[str] = mapped_column(Text)


class StudyAssignment(Base):
    """An item handed to a rater: open until rated (done) or skipped. Open and done count towards the overlap."""

    __tablename__ = "study_assignments"
    __table_args__ = (UniqueConstraint("item_id", "rater"),
                      Index("ix_study_assignments_rater", "study_id", "rater", "status"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("study_items.id"), index=True)
    rater: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    assigned_at: Mapped[str] = mapped_column(String(40))
    finished_at: Mapped[str | None] = mapped_column(String(40))
    seconds: Mapped[float | None] = mapped_column(Float)


class StudyRating(Base):
    __tablename__ = "study_ratings"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(80), unique=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("study_assignments.id"), index=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("study_answers.id"))
    label: Mapped[str] = mapped_column(String(2))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[str] = mapped_column(String(40))
    rubric_version: Mapped[str] = mapped_column(String(64))
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("study_ratings.id"))
    findings: Mapped[dict | None] = mapped_column(JSON)  # the answer check the rater was shown (None: not shown)


def row_dict(obj) -> dict:
    """A model instance as a plain dict of its columns."""
    return {c.key: getattr(obj, c.key) for c in obj.__table__.columns}
