"""languages: the language a reader's pages and emails are shown in (readers.locale, None
for readers from before: the site's LANGUAGE), and a topic's name in other languages
(topics.names, {"ar": "..."}, editable in the console)

Revision ID: 0020_i18n_locale
Revises: 0019_edition_note
Create Date: 2026-12-08 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0020_i18n_locale'
down_revision = '0019_edition_note'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('readers') as batch:
        batch.add_column(sa.Column('locale', sa.String(length=16), nullable=True))
    with op.batch_alter_table('topics') as batch:
        batch.add_column(sa.Column('names', sa.JSON(), nullable=False, server_default='{}'))


def downgrade() -> None:
    with op.batch_alter_table('topics') as batch:
        batch.drop_column('names')
    with op.batch_alter_table('readers') as batch:
        batch.drop_column('locale')
