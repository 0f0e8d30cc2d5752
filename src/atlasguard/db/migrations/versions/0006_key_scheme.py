"""key scheme: API keys verified with HMAC-SHA256 (256-bit random secrets), scrypt kept for old keys

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("scheme", sa.String(16), nullable=False, server_default="scrypt")
        )


def downgrade() -> None:
    # An HMAC-verified key cannot become a scrypt one without its secret: revoke them.
    op.execute("UPDATE api_keys SET revoked_at = created_at WHERE scheme != 'scrypt'")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("scheme")
