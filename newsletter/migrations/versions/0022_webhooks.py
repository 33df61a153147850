"""outgoing webhooks: the endpoints admins register, the events waiting to be fanned out to
them, and one delivery row per endpoint and event

Revision ID: 0022_webhooks
Revises: 0021_topic_follows
Create Date: 2026-12-08 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0022_webhooks'
down_revision = '0021_topic_follows'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('url', sa.String(2048), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('secret', sa.Text(), nullable=False),
        sa.Column('after_event_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(320), nullable=False),
    )
    op.create_table(
        'webhook_pending',
        sa.Column('event_id', sa.Integer(),
                  sa.ForeignKey('outbox_events.id', ondelete='CASCADE'), primary_key=True),
    )
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('endpoint_id', sa.Integer(),
                  sa.ForeignKey('webhook_endpoints.id', ondelete='CASCADE'), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('event_name', sa.String(64), nullable=False),
        sa.Column('order_key', sa.String(64), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('since', sa.DateTime(timezone=True), nullable=False),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.String(500), nullable=True),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('endpoint_id', 'event_id', name='uq_webhook_deliveries_event'),
    )
    op.create_index('ix_webhook_deliveries_due', 'webhook_deliveries',
                    ['status', 'next_attempt_at'])
    op.create_index('ix_webhook_deliveries_order', 'webhook_deliveries',
                    ['endpoint_id', 'order_key', 'event_id'])


def downgrade() -> None:
    op.drop_table('webhook_deliveries')
    op.drop_table('webhook_pending')
    op.drop_table('webhook_endpoints')
