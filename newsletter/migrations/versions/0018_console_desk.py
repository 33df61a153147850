"""the console's newsroom and readers pages: feed polls, CSV imports, address prefix index,
the ledger by edition (an edition's report)

Revision ID: 0018_console_desk
Revises: 0017_curated_topics
Create Date: 2026-12-07 23:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0018_console_desk'
down_revision = '0017_curated_topics'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'feed_polls',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('location', sa.String(length=2048), nullable=False, unique=True),
        sa.Column('polled_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ok', sa.Boolean(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=False),
        sa.Column('error', sa.String(length=500), nullable=True),
    )
    op.create_table(
        'reader_imports',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('actor', sa.String(length=320), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('content', sa.Text(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('total_rows', sa.Integer(), nullable=False),
        sa.Column('done_rows', sa.Integer(), nullable=False),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.String(length=500), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_readers_email_prefix', 'readers', ['email'],
                    postgresql_ops={'email': 'varchar_pattern_ops'})
    op.create_index('ix_consent_events_edition', 'consent_events', ['edition_id'])


def downgrade() -> None:
    op.drop_index('ix_consent_events_edition', table_name='consent_events')
    op.drop_index('ix_readers_email_prefix', table_name='readers')
    op.drop_table('reader_imports')
    op.drop_table('feed_polls')
