"""jobs, connection checks, streams

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 22:46:44.227056
"""
from alembic import op
import sqlalchemy as sa

import app.models  # noqa: F401  (custom column types)


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('connection_checks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('config_generation', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('stream_count', sa.Integer(), nullable=True),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('connection_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_connection_checks_source_id'), ['source_id'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=50), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('run_after', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_expires_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('worker_id', sa.String(length=100), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index('ix_jobs_claim', ['status', 'run_after', 'id'], unique=False)
        batch_op.create_index('uq_jobs_one_queued', ['source_id', 'kind'], unique=True, postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))

    op.create_table('streams',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tap_stream_id', sa.String(length=255), nullable=False),
    sa.Column('stream_name', sa.String(length=255), nullable=False),
    sa.Column('schema', sa.JSON(), nullable=False),
    sa.Column('discovered_metadata', sa.JSON(), nullable=False),
    sa.Column('selections', sa.JSON(), nullable=False),
    sa.Column('selected', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_id', 'tap_stream_id')
    )
    with op.batch_alter_table('streams', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_streams_selected'), ['selected'], unique=False)
        batch_op.create_index(batch_op.f('ix_streams_source_id'), ['source_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('streams', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_streams_source_id'))
        batch_op.drop_index(batch_op.f('ix_streams_selected'))

    op.drop_table('streams')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index('uq_jobs_one_queued', postgresql_where=sa.text("status = 'queued'"), sqlite_where=sa.text("status = 'queued'"))
        batch_op.drop_index('ix_jobs_claim')

    op.drop_table('jobs')
    with op.batch_alter_table('connection_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_connection_checks_source_id'))

    op.drop_table('connection_checks')
