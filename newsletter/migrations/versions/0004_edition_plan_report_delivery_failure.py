"""edition plan report (dry runs, skipped-empty), delivery failure kind

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-28 03:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan_report', sa.JSON(), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('failure')
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.drop_column('plan_report')
