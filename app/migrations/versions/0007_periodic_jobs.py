"""periodic jobs: when each runs next, and which worker holds it

Revision ID: 0007
Revises: 0010
Create Date: 2026-12-01 10:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

import app.models  # noqa: F401  (custom column types)

revision = '0007'
down_revision = '0010'  # after main's 0010 (webhooks, itself after 0008); the lead may re-chain
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('periodic_jobs',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('next_run_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('lease_expires_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('worker_id', sa.String(length=100), nullable=True),
    sa.Column('last_started_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_result', sa.JSON(), nullable=True),
    sa.Column('last_error', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('periodic_jobs')
