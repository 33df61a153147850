"""sign-up guards: spent form nonces, pending choices, the confirmation's failure reason

Revision ID: 0013_signup_guards
Revises: 0012_keyed_hashes
Create Date: 2026-12-04 19:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0013_signup_guards'
down_revision = '0012_keyed_hashes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'form_nonces',
        sa.Column('nonce', sa.String(length=64), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('nonce'),
    )
    op.create_index('ix_form_nonces_expires_at', 'form_nonces', ['expires_at'])
    op.create_table(
        'pending_choices',
        sa.Column('reader_id', sa.Integer(), nullable=False),
        sa.Column('topics', sa.JSON(), nullable=False),
        sa.Column('frequency', sa.String(length=16), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('reader_id'),
    )
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmation_error', sa.String(length=500),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.drop_column('confirmation_error')
    op.drop_table('pending_choices')
    op.drop_index('ix_form_nonces_expires_at', table_name='form_nonces')
    op.drop_table('form_nonces')
