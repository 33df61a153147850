"""Readers as the console finds them: by the start of their address, by status, and one
reader's ledger and deliveries, a page at a time.

Addresses are stored in clear, lower-cased (``subscriptions.normalise_email``), unique: a
search is a prefix (``LIKE 'ali%'``) served by an index, never a leading wildcard, so it
stays fast at 100,000 readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from newsletter.errors import ReaderNotFound
from newsletter.models import ConsentEvent, Delivery, Edition, Reader

STATUSES = ("pending", "active", "unsubscribed")


@dataclass(frozen=True)
class ReaderFilter:
    address: str = ""  # the start of an address, any case
    status: str = ""  # one of STATUSES, or any

    def apply(self, stmt: Select) -> Select:
        prefix = self.address.strip().lower()
        if prefix:
            stmt = stmt.where(Reader.email.like(f"{_like_escaped(prefix)}%", escape="\\"))
        if self.status in STATUSES:
            stmt = stmt.where(Reader.status == self.status)
        return stmt


def count_readers(session: Session, where: ReaderFilter) -> int:
    return session.scalar(where.apply(select(func.count(Reader.id)))) or 0


def readers(session: Session, where: ReaderFilter, limit: int, offset: int) -> list[Reader]:
    """A page of readers: by address when searching (the index's order), else newest first."""
    order = (Reader.email,) if where.address.strip() else (Reader.id.desc(),)
    return list(session.scalars(where.apply(select(Reader)).order_by(*order)
                                .limit(limit).offset(offset)))


def reader(session: Session, reader_id: int) -> Reader:
    found = session.get(Reader, reader_id)
    if found is None:
        raise ReaderNotFound(f"no reader {reader_id} (erased readers are gone)")
    return found


def count_ledger(session: Session, reader_id: int) -> int:
    return session.scalar(select(func.count(ConsentEvent.id))
                          .where(ConsentEvent.reader_id == reader_id)) or 0


def ledger(session: Session, reader_id: int, limit: int, offset: int) -> list[ConsentEvent]:
    """The reader's consent ledger, oldest first (the order things happened)."""
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.reader_id == reader_id)
                                .order_by(ConsentEvent.created_at, ConsentEvent.id)
                                .limit(limit).offset(offset)))


def count_deliveries(session: Session, reader_id: int) -> int:
    return session.scalar(select(func.count(Delivery.id))
                          .where(Delivery.reader_id == reader_id)) or 0


def deliveries(session: Session, reader_id: int, limit: int,
               offset: int) -> list[tuple[Delivery, Edition]]:
    """The reader's deliveries with their editions, newest first."""
    return list(session.execute(
        select(Delivery, Edition).join(Edition, Edition.id == Delivery.edition_id)
        .where(Delivery.reader_id == reader_id).order_by(Delivery.id.desc())
        .limit(limit).offset(offset)).tuples())


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
