"""topic_follows: the append-only log of follows gained and lost per topic (topic growth on
the console dashboard and GET /api/stats/topics), backfilled from the readers we have

Revision ID: 0021_topic_follows
Revises: 0020_story_clicks
Create Date: 2026-12-08 02:30:00.000000

The backfill derives what the rows can tell: each follow of an active reader was gained
when they (last) confirmed (created_at when that is unknown); an unsubscribed reader who had
confirmed gained their topics then and lost them when they left; an active reader's follow
of a topic retired since was lost when it was retired. Topics a reader changed before this
version are dated by their confirmation (the ledger kept the changes, not a per-topic
history we could trust). The sums per topic equal the active followers of live topics.
"""

import sqlalchemy as sa
from alembic import op

revision = '0021_topic_follows'
down_revision = '0020_story_clicks'
branch_labels = None
depends_on = None

_INSERT = "INSERT INTO topic_follows (reader_id, topic_id, change, cause, at) "
_WAS_FOLLOWING = ("(r.status = 'active' OR (r.status = 'unsubscribed' "
                  "AND r.confirmed_at IS NOT NULL AND r.unsubscribed_at IS NOT NULL))")
_BACKFILL = (
    # Gained: every follow of a reader who was (or is) active, when they confirmed.
    _INSERT + "SELECT rt.reader_id, rt.topic_id, 1, 'backfill', "
    "COALESCE(r.confirmed_at, r.created_at) FROM reader_topics rt "
    "JOIN readers r ON r.id = rt.reader_id WHERE " + _WAS_FOLLOWING,
    # Lost by leaving.
    _INSERT + "SELECT rt.reader_id, rt.topic_id, -1, 'backfill', r.unsubscribed_at "
    "FROM reader_topics rt JOIN readers r ON r.id = rt.reader_id "
    "WHERE r.status = 'unsubscribed' AND r.confirmed_at IS NOT NULL "
    "AND r.unsubscribed_at IS NOT NULL",
    # Lost by the topic's retirement (an active reader's; a reader who left lost it above).
    _INSERT + "SELECT rt.reader_id, rt.topic_id, -1, 'backfill', t.retired_at "
    "FROM reader_topics rt JOIN readers r ON r.id = rt.reader_id "
    "JOIN topics t ON t.id = rt.topic_id "
    "WHERE r.status = 'active' AND t.retired_at IS NOT NULL",
)


def upgrade() -> None:
    op.create_table(
        'topic_follows',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('reader_id', sa.Integer(), nullable=True),
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('change', sa.Integer(), nullable=False),
        sa.Column('cause', sa.String(length=16), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_topic_follows_reader_id', 'topic_follows', ['reader_id'])
    op.create_index('ix_topic_follows_at', 'topic_follows', ['at', 'topic_id'])
    for statement in _BACKFILL:
        op.execute(statement)


def downgrade() -> None:
    op.drop_index('ix_topic_follows_at', table_name='topic_follows')
    op.drop_index('ix_topic_follows_reader_id', table_name='topic_follows')
    op.drop_table('topic_follows')
