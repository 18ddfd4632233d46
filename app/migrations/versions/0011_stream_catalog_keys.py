"""streams: the tap's other catalog keys of each stream, handed back in the catalog a tap takes

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-01 13:45:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('streams') as batch:
        batch.add_column(sa.Column('extra', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('streams') as batch:
        batch.drop_column('extra')
