"""Whether a study shows raters the answer check's findings, and the findings a rater was shown with each rating.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as b:
        b.add_column(sa.Column("show_findings", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("study_ratings") as b:
        b.add_column(sa.Column("findings", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("study_ratings") as b:
        b.drop_column("findings")
    with op.batch_alter_table("studies") as b:
        b.drop_column("show_findings")
