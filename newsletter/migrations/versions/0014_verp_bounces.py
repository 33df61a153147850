"""bounce_events.unmatched: why a report that names no message we sent was ignored

Revision ID: 0014_verp_bounces
Revises: 0013_signup_guards
Create Date: 2026-11-29 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0014_verp_bounces'
down_revision = '0013_signup_guards'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows written before VERP were acted on (by address), so they stay NULL: matched.
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unmatched', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bounce_events', schema=None) as batch_op:
        batch_op.drop_column('unmatched')
