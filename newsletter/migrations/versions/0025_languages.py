"""languages: the language each article is written in, the languages each reader reads (and
a pending choice asks for), the language of each stored digest's own words

Revision ID: 0025_languages
Revises: 0024_reader_locale
Create Date: 2026-12-08 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

from newsletter.config import get_settings

revision = '0025_languages'
down_revision = '0024_reader_locale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Articles already stored are taken to be in the site's language (LANGUAGE when the
    # migration runs); readers already stored read every language (NULL), as they did.
    site = get_settings().language
    with op.batch_alter_table('articles') as batch:
        batch.add_column(sa.Column('lang', sa.String(length=16), nullable=True))
    op.execute(sa.text("UPDATE articles SET lang = :lang").bindparams(lang=site))
    with op.batch_alter_table('articles') as batch:
        batch.alter_column('lang', existing_type=sa.String(length=16), nullable=False)
    with op.batch_alter_table('readers') as batch:
        batch.add_column(sa.Column('languages', sa.String(length=64), nullable=True))
    with op.batch_alter_table('pending_choices') as batch:
        batch.add_column(sa.Column('languages', sa.String(length=64), nullable=True))
    with op.batch_alter_table('edition_digests') as batch:
        batch.add_column(sa.Column('locale', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('edition_digests') as batch:
        batch.drop_column('locale')
    with op.batch_alter_table('pending_choices') as batch:
        batch.drop_column('languages')
    with op.batch_alter_table('readers') as batch:
        batch.drop_column('languages')
    with op.batch_alter_table('articles') as batch:
        batch.drop_column('lang')
