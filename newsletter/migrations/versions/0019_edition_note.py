"""the editor's note: a short intro an editor puts at the top of every digest of an edition;
an index on consent_events.created_at (the console's 30-day reader trend; edition_id has its
own since 0018)

Revision ID: 0019_edition_note
Revises: 0018_console_desk
Create Date: 2026-12-08 00:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0019_edition_note'
down_revision = '0018_console_desk'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('editions') as batch:
        batch.add_column(sa.Column('note', sa.Text(), nullable=True))
    op.create_index('ix_consent_events_created_at', 'consent_events', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_consent_events_created_at', table_name='consent_events')
    with op.batch_alter_table('editions') as batch:
        batch.drop_column('note')
