"""Idempotency keys, append-only supersedes links, rubric version, compare details, blinded studies.

Rows from 0001 keep every value; they get a fresh uid, source "chat" and the rubric version of that release.

Revision ID: 0002
Revises: 0001
Create Date: 2024-06-01
"""

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FIRST_RUBRIC = "asclepius-4pt-v1"  # the rubric raters saw in the release that wrote schema 0001


def _backfill_uids(table: str) -> None:
    conn = op.get_bind()
    t = sa.table(table, sa.column("id", sa.Integer), sa.column("uid", sa.String))
    for (row_id,) in conn.execute(sa.select(t.c.id).where(t.c.uid.is_(None))).all():
        conn.execute(t.update().where(t.c.id == row_id).values(uid=uuid.uuid4().hex))


def upgrade() -> None:
    with op.batch_alter_table("ratings") as b:
        b.add_column(sa.Column("uid", sa.String(64)))
        b.add_column(sa.Column("source", sa.String(16)))
        b.add_column(sa.Column("rubric_version", sa.String(64)))
        b.add_column(sa.Column("supersedes_id", sa.Integer))
        b.add_column(sa.Column("comparison_id", sa.Integer))
        b.add_column(sa.Column("side", sa.String(1)))
    with op.batch_alter_table("comparisons") as b:
        b.add_column(sa.Column("uid", sa.String(64)))
        b.add_column(sa.Column("revision_a", sa.String(500)))
        b.add_column(sa.Column("revision_b", sa.String(500)))
        b.add_column(sa.Column("swapped", sa.Boolean))
        b.add_column(sa.Column("settings", sa.JSON))
        b.add_column(sa.Column("seconds_a", sa.Float))
        b.add_column(sa.Column("seconds_b", sa.Float))
        b.add_column(sa.Column("shown_at", sa.String(40)))
        b.add_column(sa.Column("rubric_version", sa.String(64)))
    _backfill_uids("ratings")
    _backfill_uids("comparisons")
    op.execute(sa.text("UPDATE ratings SET source = 'chat' WHERE source IS NULL"))
    op.execute(sa.text(f"UPDATE ratings SET rubric_version = '{FIRST_RUBRIC}' WHERE rubric_version IS NULL"))
    op.execute(sa.text(f"UPDATE comparisons SET rubric_version = '{FIRST_RUBRIC}' WHERE rubric_version IS NULL"))
    op.execute(sa.text("UPDATE comparisons SET swapped = false WHERE swapped IS NULL"))
    with op.batch_alter_table("comparisons") as b:
        b.alter_column("uid", existing_type=sa.String(64), nullable=False)
        b.alter_column("swapped", existing_type=sa.Boolean, nullable=False)
        b.alter_column("rubric_version", existing_type=sa.String(64), nullable=False)
        b.create_unique_constraint("uq_comparisons_uid", ["uid"])
    with op.batch_alter_table("ratings") as b:
        b.alter_column("uid", existing_type=sa.String(64), nullable=False)
        b.alter_column("source", existing_type=sa.String(16), nullable=False)
        b.alter_column("rubric_version", existing_type=sa.String(64), nullable=False)
        b.create_unique_constraint("uq_ratings_uid", ["uid"])
        b.create_foreign_key("fk_ratings_supersedes_id_ratings", "ratings", ["supersedes_id"], ["id"])
        b.create_foreign_key("fk_ratings_comparison_id_comparisons", "comparisons", ["comparison_id"], ["id"])

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("overlap", sa.Integer, nullable=False),
        sa.Column("models", sa.JSON, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("rubric_version", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_studies"),
        sa.UniqueConstraint("name", name="uq_studies_name"),
    )
    op.create_table(
        "study_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("ext_id", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("question", sa.Text, nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_study_items"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_study_items_study_id_studies"),
        sa.UniqueConstraint("study_id", "ext_id", name="uq_study_items_study_id"),
    )
    op.create_index("ix_study_items_study_id", "study_items", ["study_id"])
    op.create_table(
        "study_answers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("model", sa.String(500), nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_study_answers"),
        sa.ForeignKeyConstraint(["item_id"], ["study_items.id"], name="fk_study_answers_item_id_study_items"),
        sa.UniqueConstraint("item_id", "model", name="uq_study_answers_item_id"),
    )
    op.create_index("ix_study_answers_item_id", "study_answers", ["item_id"])
    op.create_table(
        "study_assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("study_id", sa.Integer, nullable=False),
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("rater", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assigned_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("seconds", sa.Float),
        sa.PrimaryKeyConstraint("id", name="pk_study_assignments"),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name="fk_study_assignments_study_id_studies"),
        sa.ForeignKeyConstraint(["item_id"], ["study_items.id"], name="fk_study_assignments_item_id_study_items"),
        sa.UniqueConstraint("item_id", "rater", name="uq_study_assignments_item_id"),
    )
    op.create_index("ix_study_assignments_study_id", "study_assignments", ["study_id"])
    op.create_index("ix_study_assignments_item_id", "study_assignments", ["item_id"])
    op.create_table(
        "study_ratings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", sa.String(80), nullable=False),
        sa.Column("assignment_id", sa.Integer, nullable=False),
        sa.Column("answer_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(2), nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("rubric_version", sa.String(64), nullable=False),
        sa.Column("supersedes_id", sa.Integer),
        sa.PrimaryKeyConstraint("id", name="pk_study_ratings"),
        sa.ForeignKeyConstraint(["assignment_id"], ["study_assignments.id"],
                                name="fk_study_ratings_assignment_id_study_assignments"),
        sa.ForeignKeyConstraint(["answer_id"], ["study_answers.id"], name="fk_study_ratings_answer_id_study_answers"),
        sa.ForeignKeyConstraint(["supersedes_id"], ["study_ratings.id"],
                                name="fk_study_ratings_supersedes_id_study_ratings"),
        sa.UniqueConstraint("uid", name="uq_study_ratings_uid"),
    )
    op.create_index("ix_study_ratings_assignment_id", "study_ratings", ["assignment_id"])


def downgrade() -> None:
    for table in ("study_ratings", "study_assignments", "study_answers", "study_items", "studies"):
        op.drop_table(table)
    with op.batch_alter_table("ratings") as b:
        b.drop_constraint("fk_ratings_comparison_id_comparisons", type_="foreignkey")
        b.drop_constraint("fk_ratings_supersedes_id_ratings", type_="foreignkey")
        b.drop_constraint("uq_ratings_uid", type_="unique")
        for col in ("side", "comparison_id", "supersedes_id", "rubric_version", "source", "uid"):
            b.drop_column(col)
    with op.batch_alter_table("comparisons") as b:
        b.drop_constraint("uq_comparisons_uid", type_="unique")
        for col in ("rubric_version", "shown_at", "seconds_b", "seconds_a", "settings", "swapped", "revision_b",
                    "revision_a", "uid"):
            b.drop_column(col)
