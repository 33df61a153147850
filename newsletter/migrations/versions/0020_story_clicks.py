"""click counting (issue 20): story_clicks, clicks per edition × article × topic (× delivery
in reader mode), written in batches by the web process

Revision ID: 0020_story_clicks
Revises: 0019_edition_note
Create Date: 2026-12-08 02:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0020_story_clicks'
down_revision = '0019_edition_note'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'story_clicks',
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('article_id', sa.Integer(), nullable=False),
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=False),
        sa.Column('clicks', sa.Integer(), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('edition_id', 'article_id', 'topic_id', 'delivery_id'),
    )
    op.create_index('ix_story_clicks_last_at', 'story_clicks', ['last_at'])


def downgrade() -> None:
    op.drop_index('ix_story_clicks_last_at', table_name='story_clicks')
    op.drop_table('story_clicks')
