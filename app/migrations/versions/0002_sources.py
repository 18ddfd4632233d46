"""sources, credentials, events, idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 22:17:57.809802
"""
import sqlalchemy as sa
from alembic import op

import app.models  # noqa: F401  (custom column types)

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sources',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('display_name', sa.String(length=255), nullable=False),
    sa.Column('properties', sa.JSON(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('config_generation', sa.Integer(), nullable=False),
    sa.Column('discovered_generation', sa.Integer(), nullable=True),
    sa.Column('connected_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('broken_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('broken_reason', sa.JSON(), nullable=True),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('paused_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('system_paused_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.create_index('ix_sources_account_live_id', ['account_id', 'deleted_at', 'id'], unique=False)
        batch_op.create_index('uq_sources_account_name_live', ['account_id', 'name'], unique=True, postgresql_where=sa.text('deleted_at IS NULL'), sqlite_where=sa.text('deleted_at IS NULL'))

    op.create_table('idempotency_keys',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'key')
    )
    op.create_table('source_credentials',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('updated_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'name')
    )
    op.create_table('source_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('type', sa.String(length=50), nullable=False),
    sa.Column('at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('source_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_source_events_source_id'), ['source_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('source_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_source_events_source_id'))

    op.drop_table('source_events')
    op.drop_table('source_credentials')
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        batch_op.drop_index('uq_sources_account_name_live', postgresql_where=sa.text('deleted_at IS NULL'), sqlite_where=sa.text('deleted_at IS NULL'))
        batch_op.drop_index('ix_sources_account_live_id')

    op.drop_table('sources')
