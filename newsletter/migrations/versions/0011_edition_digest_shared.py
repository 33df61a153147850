"""edition_digests.shared: a digest a second reader of the edition shares

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 19:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A caching hint for the workers (content.digest_message); unknown for rows written
    # before it, which then cost a process one more render of a shared digest.
    with op.batch_alter_table('edition_digests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shared', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('edition_digests', schema=None) as batch_op:
        batch_op.drop_column('shared')
