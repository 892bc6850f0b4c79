"""A per-database secret (signs what the page keeps for a rater), item coverage counters, study content hashes.

``study_items.coverage`` counts the open and done assignments of an item, so handing out the next item reads a
few index rows instead of every item; existing rows are backfilled from their assignments.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("app_secrets", sa.Column("name", sa.String(64), primary_key=True),
                    sa.Column("value", sa.String(128), nullable=False))
    with op.batch_alter_table("study_items") as b:
        b.add_column(sa.Column("coverage", sa.Integer, nullable=False, server_default="0"))
        b.create_index("ix_study_items_next", ["study_id", "coverage", "position"])
    with op.batch_alter_table("studies") as b:
        b.add_column(sa.Column("content_sha256", sa.String(64)))
        b.add_column(sa.Column("n_items", sa.Integer, nullable=False, server_default="0"))
        b.add_column(sa.Column("ready", sa.Boolean, nullable=False, server_default=sa.true()))
    with op.batch_alter_table("study_assignments") as b:
        b.create_index("ix_study_assignments_rater", ["study_id", "rater", "status"])
    op.execute("UPDATE study_items SET coverage = (SELECT COUNT(*) FROM study_assignments a WHERE "
               "a.item_id = study_items.id AND a.status IN ('open', 'done'))")
    op.execute("UPDATE studies SET n_items = (SELECT COUNT(*) FROM study_items i WHERE i.study_id = studies.id)")


def downgrade() -> None:
    with op.batch_alter_table("study_assignments") as b:
        b.drop_index("ix_study_assignments_rater")
    with op.batch_alter_table("studies") as b:
        b.drop_column("ready")
        b.drop_column("n_items")
        b.drop_column("content_sha256")
    with op.batch_alter_table("study_items") as b:
        b.drop_index("ix_study_items_next")
        b.drop_column("coverage")
    op.drop_table("app_secrets")
