"""bounce events

Revision ID: 0007
Revises: 0002
Create Date: 2026-11-28 12:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bounce_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reader_id', sa.Integer(), nullable=True),
    sa.Column('email_hash', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=True),
    sa.Column('diagnostic', sa.String(length=500), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('delivery_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=64), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.create_index('ix_bounce_events_reader', ['reader_id', 'kind', 'received_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_bounce_events_email_hash'), ['email_hash'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_bounce_events_email_hash'))
        batch_op.drop_index('ix_bounce_events_reader')

    op.drop_table('bounce_events')
