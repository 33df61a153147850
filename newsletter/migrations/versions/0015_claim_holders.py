"""deliveries.holder and claim_holders: who holds a claim, and whether it is still alive

Revision ID: 0015_claim_holders
Revises: 0014_verp_bounces
Create Date: 2026-11-30 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0015_claim_holders'
down_revision = '0014_verp_bounces'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'claim_holders',
        sa.Column('id', sa.String(length=120), primary_key=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
    )
    # Rows claimed before this migration keep NULL: only the lease takes them back.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('holder', sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('holder')
    op.drop_table('claim_holders')
