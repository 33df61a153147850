"""/admin/articles: the newsroom's articles — search, tags, status, revisions and corrections,
unpublish (confirmed first). Editors and admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from newsletter import audit
from newsletter.editions import withdrawal
from newsletter.newsroom import listing
from newsletter.web.console.auth import CurrentEditor, console_router, render
from newsletter.web.console.pagination import PageNumber, Pages
from newsletter.web.deps import RowId, SessionDep

router = console_router()
Text = Annotated[str, Query(max_length=200)]


@router.get("/articles", response_class=HTMLResponse)
def articles_page(request: Request, session: SessionDep, user: CurrentEditor, q: Text = "",
                  tag: Text = "", status: Text = "", page: PageNumber = 1) -> HTMLResponse:
    where = listing.ArticleFilter(words=q, tag=tag, status=status)
    pages = Pages(page, listing.count_articles(session, where),
                  params=(("q", q), ("tag", tag), ("status", status)))
    return render(request, user, "articles.html", section="articles", pages=pages,
                  listed=listing.articles(session, where, pages.per_page, pages.offset),
                  tags=listing.tags_in_use(session), statuses=listing.STATUSES,
                  form={"q": q, "tag": tag, "status": status})


@router.get("/articles/{article_id}", response_class=HTMLResponse)
def article_page(request: Request, session: SessionDep, user: CurrentEditor,
                 article_id: RowId, page: PageNumber = 1) -> HTMLResponse:
    article = listing.article(session, article_id)
    pages = Pages(page, listing.count_revisions(session, article_id))
    return render(request, user, "article.html", section="articles", article=article,
                  pages=pages, done=request.query_params.get("done") == "unpublished",
                  revisions=listing.revisions(session, article_id, pages.per_page,
                                              pages.offset))


@router.get("/articles/{article_id}/unpublish", response_class=HTMLResponse)
def confirm_unpublish(request: Request, session: SessionDep, user: CurrentEditor,
                      article_id: RowId) -> HTMLResponse:
    return render(request, user, "article_unpublish.html", section="articles",
                  article=listing.article(session, article_id))


@router.post("/articles/{article_id}/unpublish")
def unpublish(session: SessionDep, user: CurrentEditor, article_id: RowId) -> Response:
    # The same two steps as DELETE /api/articles/{id}: mark it, take it out of unsent mail.
    done = withdrawal.unpublish(session, article_id)
    audit.record(session, user.actor.name, "article.unpublish", f"article:{article_id}",
                 {"title": done.article.title, "deliveries_changed": done.deliveries_changed},
                 user.ip)
    session.commit()
    return RedirectResponse(f"/admin/articles/{article_id}?done=unpublished", 303)
