"""registry: objects, immutable versions, aliases

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "registry_objects",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), sa.ForeignKey("principals.name"), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("framework", sa.String(100), nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "registry_versions",
        sa.Column("name", sa.String(128), sa.ForeignKey("registry_objects.name"), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("layout", sa.String(8), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("blobs", sa.Text, nullable=False),
        sa.Column("size", big, nullable=False),
        sa.Column("encrypted", sa.Boolean, nullable=False),
        sa.Column("lineage", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("name", "digest", name="uq_registry_versions_name_digest"),
    )
    op.create_table(
        "registry_aliases",
        sa.Column("name", sa.String(128), sa.ForeignKey("registry_objects.name"), primary_key=True),
        sa.Column("alias", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("registry_aliases")
    op.drop_table("registry_versions")
    op.drop_table("registry_objects")
