"""lifecycle: what the webhooks last said about a source moves onto its row (announced_step,
announced_state), so announcing a change needs no row, upsert or lock of its own

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 16:40:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sources') as batch:
        batch.add_column(sa.Column('announced_step', sa.String(length=50), nullable=True))
        batch.add_column(sa.Column('announced_state', sa.String(length=20), nullable=True))
    op.execute("UPDATE sources SET announced_step = (SELECT step_type FROM webhook_source_states s "
               "WHERE s.source_id = sources.id), announced_state = (SELECT setup_state FROM "
               "webhook_source_states s WHERE s.source_id = sources.id)")
    op.drop_table('webhook_source_states')


def downgrade() -> None:
    op.create_table('webhook_source_states',
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('step_type', sa.String(length=50), nullable=True),
    sa.Column('setup_state', sa.String(length=20), nullable=False),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('source_id')
    )
    op.execute("INSERT INTO webhook_source_states (source_id, step_type, setup_state) "
               "SELECT id, announced_step, announced_state FROM sources WHERE announced_state IS NOT NULL")
    with op.batch_alter_table('sources') as batch:
        batch.drop_column('announced_state')
        batch.drop_column('announced_step')
