"""monitor suspensions: principals the query monitor suspended, until lifted or expired

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_suspensions",
        sa.Column("principal", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("until", sa.Float, nullable=False),
        sa.Column("why", sa.String(500), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_suspensions")
