"""retention: received_digests (a pruned delivery's digest per reader, for "never twice") and
an edition's pruned_at and pruned_figures (its report's figures once its deliveries are gone)

Revision ID: 0026_received_digests
Revises: 0025_languages
Create Date: 2026-12-08 03:30:00.000000
"""

import sqlalchemy as sa
from alembic import op


revision = '0026_received_digests'
down_revision = '0025_languages'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'received_digests',
        sa.Column('reader_id', sa.Integer(),
                  sa.ForeignKey('readers.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('edition_id', sa.Integer(),
                  sa.ForeignKey('editions.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('content_key', sa.String(64), nullable=False),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table('editions') as batch:
        batch.add_column(sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('pruned_figures', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('editions') as batch:
        batch.drop_column('pruned_figures')
        batch.drop_column('pruned_at')
    op.drop_table('received_digests')
