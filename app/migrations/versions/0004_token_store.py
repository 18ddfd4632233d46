"""token store: cached access and session tokens, with refresh back-off state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 22:34:14.340048
"""
import sqlalchemy as sa
from alembic import op

import app.models  # noqa: F401  (custom column types)

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('source_tokens',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('expires_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('refreshed_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('config_generation', sa.Integer(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(length=60), nullable=True),
    sa.Column('last_error_permanent', sa.Boolean(), nullable=False),
    sa.Column('updated_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'kind')
    )


def downgrade() -> None:
    op.drop_table('source_tokens')
