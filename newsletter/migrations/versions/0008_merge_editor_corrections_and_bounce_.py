"""merge editor, corrections and bounce branches

Revision ID: 0008
Revises: 0003, 0004, 0007
Create Date: 2026-11-28 03:20:40.273908
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = ('0003', '0004', '0007')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
