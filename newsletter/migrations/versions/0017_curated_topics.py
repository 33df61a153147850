"""topics and topic_tags: editors curate what readers follow; reader_topics names topics

Every existing tag becomes a topic of the same id, slug and name covering it, so nothing a
reader follows changes: reader_topics keeps its pairs with topic ids equal to the old tag
ids, pending choices and filtered editions keep naming the same slugs, and the topic ids
stored in edition_digests' items (formerly tag ids) still name the same section.

Revision ID: 0017_curated_topics
Revises: 0016_editors_audit
Create Date: 2026-12-07 23:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = '0017_curated_topics'
# Follows console-auth's editors and audit log (0016).
down_revision = '0016_editors_audit'
branch_labels = None
depends_on = None


def _reader_topics(name: str, column: str, target: str) -> None:
    op.create_table(
        name,
        sa.Column('reader_id', sa.Integer(), nullable=False),
        sa.Column(column, sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint([column], [f'{target}.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('reader_id', column),
    )


def _swap_reader_topics(column: str, target: str, old_index: str, new_index: str,
                        copy: str) -> None:
    """Rebuild reader_topics around ``column`` (the same steps on SQLite and PostgreSQL)."""
    _reader_topics('reader_topics_next', column, target)
    op.execute(f"INSERT INTO reader_topics_next (reader_id, {column}) {copy}")
    op.drop_index(old_index, table_name='reader_topics')
    op.drop_table('reader_topics')
    op.rename_table('reader_topics_next', 'reader_topics')
    if op.get_bind().dialect.name == 'postgresql':
        # Constraint names follow the table's first name; give them the usual ones.
        for old, new in (('reader_topics_next_pkey', 'reader_topics_pkey'),
                         ('reader_topics_next_reader_id_fkey', 'reader_topics_reader_id_fkey'),
                         (f'reader_topics_next_{column}_fkey', f'reader_topics_{column}_fkey')):
            op.execute(f'ALTER TABLE reader_topics RENAME CONSTRAINT {old} TO {new}')
    op.create_index(new_index, 'reader_topics', [column], unique=False)


def upgrade() -> None:
    op.create_table(
        'topics',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('slug', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('description', sa.String(length=500), server_default='', nullable=False),
        sa.Column('position', sa.Integer(), server_default='0', nullable=False),
        sa.Column('group_name', sa.String(length=128), nullable=True),
        sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('slug'),
    )
    op.create_table(
        'topic_tags',
        sa.Column('topic_id', sa.Integer(), nullable=False),
        sa.Column('tag_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['topic_id'], ['topics.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('topic_id', 'tag_id'),
    )
    op.create_index('ix_topic_tags_tag', 'topic_tags', ['tag_id'], unique=False)
    bind = op.get_bind()
    # The form listed tags by name: their positions keep that order.
    op.execute(
        "INSERT INTO topics (id, slug, name, description, position, group_name, created_at) "
        "SELECT t.id, t.slug, t.name, '', "
        "(SELECT count(*) FROM tags u WHERE u.name < t.name OR (u.name = t.name AND u.id < t.id)),"
        " NULL, CURRENT_TIMESTAMP FROM tags t")
    op.execute("INSERT INTO topic_tags (topic_id, tag_id) SELECT id, id FROM tags")
    if bind.dialect.name == 'postgresql':
        # Ids were given explicitly: the next topic made must not take one of them.
        op.execute("SELECT setval(pg_get_serial_sequence('topics', 'id'), "
                   "COALESCE((SELECT max(id) FROM topics), 0) + 1, false)")
    _swap_reader_topics('topic_id', 'topics', 'ix_reader_topics_tag', 'ix_reader_topics_topic',
                        "SELECT reader_id, tag_id FROM reader_topics")


def downgrade() -> None:
    # A reader following a topic follows, as before topics, every tag it covered.
    _swap_reader_topics('tag_id', 'tags', 'ix_reader_topics_topic', 'ix_reader_topics_tag',
                        "SELECT DISTINCT r.reader_id, c.tag_id FROM reader_topics r "
                        "JOIN topic_tags c ON c.topic_id = r.topic_id")
    op.drop_index('ix_topic_tags_tag', table_name='topic_tags')
    op.drop_table('topic_tags')
    op.drop_table('topics')
