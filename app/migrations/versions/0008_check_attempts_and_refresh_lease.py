"""connection checks keep their last error while retrying; token refresh as a lease

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

import app.models  # noqa: F401  (custom column types)

revision = '0008'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('source_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('refresh_holder', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('refresh_lease_until', app.models.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('connection_checks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('error_at', app.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('connection_checks', schema=None) as batch_op:
        batch_op.drop_column('error_at')
        batch_op.drop_column('attempts')
    with op.batch_alter_table('source_tokens', schema=None) as batch_op:
        batch_op.drop_column('refresh_lease_until')
        batch_op.drop_column('refresh_holder')
