"""First schema: chat ratings and blind comparisons.

Revision ID: 0001
Revises:
Create Date: 2024-05-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rater", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(500), nullable=False),
        sa.Column("model_revision", sa.String(500)),
        sa.Column("precision", sa.String(64)),
        sa.Column("template", sa.String(64)),
        sa.Column("task", sa.String(200)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("instruction", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
        sa.Column("settings", sa.JSON),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("generation_seconds", sa.Float),
        sa.Column("new_tokens", sa.Integer),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("tags", sa.JSON),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ratings"),
    )
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rater", sa.String(200), nullable=False),
        sa.Column("model_a", sa.String(500), nullable=False),
        sa.Column("model_b", sa.String(500), nullable=False),
        sa.Column("winner", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("task", sa.String(200)),
        sa.Column("instruction", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("answer_a", sa.Text, nullable=False),
        sa.Column("answer_b", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_comparisons"),
    )


def downgrade() -> None:
    op.drop_table("comparisons")
    op.drop_table("ratings")
