"""readers' time zones: readers.timezone (NULL: the site's), deliveries.not_before (a
scheduled delivery waits for the send hour in its reader's zone) and the index the
reconciler's wave release reads

Revision ID: 0023_reader_time_zones
Revises: 0022_webhooks
Create Date: 2026-12-08 02:40:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0023_reader_time_zones'
down_revision = '0022_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('readers') as batch:
        batch.add_column(sa.Column('timezone', sa.String(length=64), nullable=True))
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('not_before', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_deliveries_status_not_before', 'deliveries', ['status', 'not_before'])


def downgrade() -> None:
    op.drop_index('ix_deliveries_status_not_before', table_name='deliveries')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('not_before')
    with op.batch_alter_table('readers') as batch:
        batch.drop_column('timezone')
