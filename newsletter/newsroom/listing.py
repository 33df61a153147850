"""What the console lists of the newsroom: articles found by words in their headline, by tag
and by status, newest first, with their revisions and how many were corrections."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Integer, Select, cast, func, select
from sqlalchemy.orm import Session

from newsletter.errors import ArticleNotFound
from newsletter.models import Article, ArticleRevision, ArticleTag, Tag

STATUSES = ("published", "unpublished")


@dataclass(frozen=True)
class ArticleFilter:
    words: str = ""  # found anywhere in the headline, any case
    tag: str = ""  # a tag's slug
    status: str = ""  # one of STATUSES, or any

    def apply(self, stmt: Select) -> Select:
        if self.words.strip():
            stmt = stmt.where(func.lower(Article.title).like(
                f"%{_like_escaped(self.words.strip().lower())}%", escape="\\"))
        if self.tag:
            stmt = stmt.where(Article.id.in_(
                select(ArticleTag.article_id).join(Tag, Tag.id == ArticleTag.tag_id)
                .where(Tag.slug == self.tag)))
        if self.status in STATUSES:
            stmt = stmt.where(Article.status == self.status)
        return stmt


@dataclass(frozen=True)
class Listed:
    article: Article
    revisions: int
    corrections: int  # substantial revisions: readers who had it were told


def count_articles(session: Session, where: ArticleFilter) -> int:
    return session.scalar(where.apply(select(func.count(Article.id)))) or 0


def articles(session: Session, where: ArticleFilter, limit: int, offset: int) -> list[Listed]:
    """One page of articles matching ``where``, newest first, with their revision counts."""
    page = list(session.scalars(where.apply(select(Article))
                                .order_by(Article.published_at.desc(), Article.id.desc())
                                .limit(limit).offset(offset)))
    counts = {row.article_id: (row.revisions, row.corrections) for row in session.execute(
        select(ArticleRevision.article_id, func.count().label("revisions"),
               func.sum(cast(ArticleRevision.substantial, Integer)).label("corrections"))
        .where(ArticleRevision.article_id.in_([a.id for a in page]))
        .group_by(ArticleRevision.article_id))} if page else {}
    return [Listed(a, *(int(n or 0) for n in counts.get(a.id, (0, 0)))) for a in page]


def article(session: Session, article_id: int) -> Article:
    found = session.get(Article, article_id)
    if found is None:
        raise ArticleNotFound(f"no article {article_id}")
    return found


def count_revisions(session: Session, article_id: int) -> int:
    return session.scalar(select(func.count(ArticleRevision.id))
                          .where(ArticleRevision.article_id == article_id)) or 0


def revisions(session: Session, article_id: int, limit: int,
              offset: int) -> list[ArticleRevision]:
    """What each update of the article changed, newest first."""
    return list(session.scalars(select(ArticleRevision)
                                .where(ArticleRevision.article_id == article_id)
                                .order_by(ArticleRevision.changed_at.desc(),
                                          ArticleRevision.id.desc())
                                .limit(limit).offset(offset)))


def tags_in_use(session: Session) -> list[Tag]:
    """Every tag, by name, for the console's filter."""
    return list(session.scalars(select(Tag).order_by(Tag.name)))


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
