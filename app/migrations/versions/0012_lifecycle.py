"""lifecycle: what the webhooks last said about each source's step and setup state; whether a
cached token's lifetime was stated

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 13:40:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webhook_source_states',
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step_type', sa.String(length=50), nullable=True),
    sa.Column('setup_state', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source_id')
    )
    with op.batch_alter_table('source_tokens') as batch:
        batch.add_column(sa.Column('expiry_stated', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('source_tokens') as batch:
        batch.drop_column('expiry_stated')
    op.drop_table('webhook_source_states')
