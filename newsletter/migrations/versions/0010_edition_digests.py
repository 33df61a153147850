"""edition_digests: an edition's content once per content key, not per reader and article

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 06:00:00.000000
"""

import json

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    digests = op.create_table(
        'edition_digests',
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('content_key', sa.String(length=64), nullable=False),
        sa.Column('items', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['edition_id'], ['editions.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('edition_id', 'content_key'),
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_reader', ['reader_id'], unique=False)
    # Readers with one content key carry the same rows: one delivery per key says it all.
    # (The per-reader rows that an unpublish took an article out of changed key with it.)
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT d.edition_id, d.content_key, a.delivery_id, a.kind, a.article_id, a.tag_id,"
        " a.revision_id FROM delivery_articles a JOIN deliveries d ON d.id = a.delivery_id"
        " ORDER BY d.edition_id, d.content_key, a.delivery_id, a.position")).all()
    found: dict[tuple[int, str], tuple[int, list]] = {}
    for edition_id, key, delivery_id, kind, article_id, tag_id, revision_id in rows:
        first = found.setdefault((edition_id, key), (delivery_id, []))
        if first[0] == delivery_id:
            first[1].append([kind, article_id, tag_id, revision_id])
    if found:
        op.bulk_insert(digests, [{"edition_id": e, "content_key": k, "items": items}
                                 for (e, k), (_, items) in found.items()])
    op.drop_table('delivery_articles')


def downgrade() -> None:
    op.create_table(
        'delivery_articles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('delivery_id', sa.Integer(), nullable=False),
        sa.Column('reader_id', sa.Integer(), nullable=False),
        sa.Column('article_id', sa.Integer(), nullable=False),
        sa.Column('tag_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), server_default='new', nullable=False),
        sa.Column('revision_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['article_id'], ['articles.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['delivery_id'], ['deliveries.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['reader_id'], ['readers.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['revision_id'], ['article_revisions.id'], ondelete='CASCADE',
                                name='fk_delivery_articles_revision'),
        sa.ForeignKeyConstraint(['tag_id'], ['tags.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    table = sa.table('delivery_articles', *(sa.column(c) for c in (
        'delivery_id', 'reader_id', 'article_id', 'tag_id', 'position', 'kind', 'revision_id')))
    rows = op.get_bind().execute(sa.text(
        "SELECT d.id, d.reader_id, g.items FROM deliveries d JOIN edition_digests g"
        " ON g.edition_id = d.edition_id AND g.content_key = d.content_key"
        " WHERE d.reader_id IS NOT NULL ORDER BY d.id")).all()
    out, seen = [], set()
    for delivery_id, reader_id, items in rows:
        items = json.loads(items) if isinstance(items, str) else items
        for position, (kind, article_id, tag_id, revision_id) in enumerate(items):
            # The old table allowed an article once per reader; keep the first.
            once = (reader_id, article_id) if kind == 'new' else (reader_id, revision_id, 'c')
            if once in seen:
                continue
            seen.add(once)
            out.append({'delivery_id': delivery_id, 'reader_id': reader_id,
                        'article_id': article_id, 'tag_id': tag_id, 'position': position,
                        'kind': kind, 'revision_id': revision_id})
    if out:
        op.bulk_insert(table, out)
    with op.batch_alter_table('delivery_articles', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_articles_delivery_id', ['delivery_id'], unique=False)
        batch_op.create_index('uq_reader_article_new', ['reader_id', 'article_id'], unique=True,
                              sqlite_where=sa.text("kind = 'new'"),
                              postgresql_where=sa.text("kind = 'new'"))
        batch_op.create_index('uq_reader_revision', ['reader_id', 'revision_id'], unique=True)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_reader')
    op.drop_table('edition_digests')
