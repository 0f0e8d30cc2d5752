"""groups: membership of principals in ``group:<name>`` principals

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "group_members",
        sa.Column("group", sa.String(200), sa.ForeignKey("principals.name"), primary_key=True),
        sa.Column("member", sa.String(200), sa.ForeignKey("principals.name"), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_group_members_member", "group_members", ["member"])


def downgrade() -> None:
    op.drop_table("group_members")
