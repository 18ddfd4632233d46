"""oauth apps, handshake states, secrets handed out as secret_id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 22:27:02.732187
"""
import sqlalchemy as sa
from alembic import op

import app.models  # noqa: F401  (custom column types)

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('oauth_apps',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('scope', sa.String(length=20), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('source_type', sa.String(length=100), nullable=False),
    sa.Column('client_id', sa.String(length=500), nullable=False),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.CheckConstraint("(scope = 'operator' AND account_id IS NULL) OR (scope = 'account' AND account_id IS NOT NULL)", name='ck_oauth_apps_scope_account'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('oauth_apps', schema=None) as batch_op:
        batch_op.create_index('uq_oauth_apps_account_type', ['account_id', 'source_type'], unique=True, postgresql_where=sa.text("scope = 'account'"), sqlite_where=sa.text("scope = 'account'"))
        batch_op.create_index('uq_oauth_apps_operator_type', ['source_type'], unique=True, postgresql_where=sa.text("scope = 'operator'"), sqlite_where=sa.text("scope = 'operator'"))

    op.create_table('oauth_secrets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_type', sa.String(length=100), nullable=False),
    sa.Column('app_scope', sa.String(length=20), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('used_by_source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['used_by_source_id'], ['sources.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret_hash')
    )
    with op.batch_alter_table('oauth_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_secrets_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_oauth_secrets_expires_at', ['expires_at'], unique=False)

    op.create_table('oauth_states',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('state_hash', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source_type', sa.String(length=100), nullable=False),
    sa.Column('redirect_url', sa.String(length=2048), nullable=False),
    sa.Column('source_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('input_configuration', sa.JSON(), nullable=False),
    sa.Column('app_scope', sa.String(length=20), nullable=False),
    sa.Column('client_id', sa.String(length=500), nullable=False),
    sa.Column('created_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', app.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', app.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=50), nullable=True),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('state_hash')
    )
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_oauth_states_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_oauth_states_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('oauth_states', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_states_expires_at')
        batch_op.drop_index(batch_op.f('ix_oauth_states_account_id'))

    op.drop_table('oauth_states')
    with op.batch_alter_table('oauth_secrets', schema=None) as batch_op:
        batch_op.drop_index('ix_oauth_secrets_expires_at')
        batch_op.drop_index(batch_op.f('ix_oauth_secrets_account_id'))

    op.drop_table('oauth_secrets')
    with op.batch_alter_table('oauth_apps', schema=None) as batch_op:
        batch_op.drop_index('uq_oauth_apps_operator_type', postgresql_where=sa.text("scope = 'operator'"), sqlite_where=sa.text("scope = 'operator'"))
        batch_op.drop_index('uq_oauth_apps_account_type', postgresql_where=sa.text("scope = 'account'"), sqlite_where=sa.text("scope = 'account'"))

    op.drop_table('oauth_apps')