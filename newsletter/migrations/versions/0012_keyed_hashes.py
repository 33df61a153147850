"""keyed address hashes (HMAC with HASH_KEY), legacy suppressions marked; readers.data_link_sent_at

Revision ID: 0012_keyed_hashes
Revises: 0011
Create Date: 2026-12-04 18:45:00.000000

A bare SHA-256 of an address is reversed by hashing a list of addresses, so suppressions,
the consent ledger and bounce reports now keep HMAC-SHA256(HASH_KEY, address). A hash is
rewritten here wherever its address is still known (a reader's row); the others (erased
readers) cannot be, so their suppressions are marked 'sha256' and matched by the bare hash
until the address shows up again (consent.suppressed_among rewrites them then). Ledger and
bounce rows left bare are found by either hash (consent.matches).
"""

import hashlib
import hmac

import sqlalchemy as sa
from alembic import op

revision = '0012_keyed_hashes'
down_revision = '0011'
branch_labels = None
depends_on = None

# Readers read per round: bounded memory on a large list, few round trips.
CHUNK = 2000


def _hashes(emails: list[str]) -> list[tuple[str, str]]:
    from newsletter.config import get_settings

    key = get_settings().hash_key.encode()
    out = []
    for email in emails:
        canonical = email.strip().lower().encode()
        out.append((hashlib.sha256(canonical).hexdigest(),
                    hmac.new(key, canonical, hashlib.sha256).hexdigest()))
    return out


def _rewrite(old_is_bare: bool) -> None:
    """Turn bare hashes into keyed ones (or back) for every address still in readers."""
    conn = op.get_bind()
    readers = sa.table('readers', sa.column('id', sa.Integer), sa.column('email', sa.String))
    scheme_after = 'hmac-sha256' if old_is_bare else 'sha256'
    last = 0
    while True:
        rows = conn.execute(sa.select(readers.c.id, readers.c.email)
                            .where(readers.c.id > last).order_by(readers.c.id)
                            .limit(CHUNK)).all()
        if not rows:
            return
        last = rows[-1][0]
        pairs = [{'old': bare if old_is_bare else keyed, 'new': keyed if old_is_bare else bare}
                 for bare, keyed in _hashes([email for _, email in rows])]
        conn.execute(sa.text("UPDATE suppressions SET email_hash = :new, hash_scheme = "
                             f"'{scheme_after}' WHERE email_hash = :old"), pairs)
        for table in ('consent_events', 'bounce_events'):
            conn.execute(sa.text(f"UPDATE {table} SET email_hash = :new WHERE email_hash = :old"),
                         pairs)


def upgrade() -> None:
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        # Every row so far is a bare hash: marked so, then rewritten where we can.
        batch_op.add_column(sa.Column('hash_scheme', sa.String(length=16),
                                      server_default='sha256', nullable=False))
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.alter_column('hash_scheme', server_default='hmac-sha256',
                              existing_type=sa.String(length=16), existing_nullable=False)
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('data_link_sent_at', sa.DateTime(timezone=True),
                                      nullable=True))
    _rewrite(old_is_bare=True)


def downgrade() -> None:
    # Only hashes whose address is still a reader's can go back to bare SHA-256; the
    # suppressions of erased readers stay keyed, which the old code no longer recognises.
    _rewrite(old_is_bare=False)
    with op.batch_alter_table('readers', schema=None) as batch_op:
        batch_op.drop_column('data_link_sent_at')
    with op.batch_alter_table('suppressions', schema=None) as batch_op:
        batch_op.drop_column('hash_scheme')
