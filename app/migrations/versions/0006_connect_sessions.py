"""connect sessions of the hosted connect page

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 22:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

import app.models  # noqa: F401  (custom column types)

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connect_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('allowed_types', sa.JSON(), nullable=False),
    sa.Column('source_type', sa.String(length=100), nullable=True),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('mode', sa.String(length=20), nullable=False),
    sa.Column('redirect_url', sa.String(length=2048), nullable=False),
    sa.Column('display', sa.JSON(), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('connect_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connect_sessions_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_connect_sessions_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('connect_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_connect_sessions_expires_at')
        batch_op.drop_index(batch_op.f('ix_connect_sessions_account_id'))

    op.drop_table('connect_sessions')
