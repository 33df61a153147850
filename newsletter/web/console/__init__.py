"""The newsroom console under /admin: server-rendered pages for editors and admins.

How a page module plugs in (one module per page group, e.g. ``editions.py``):

- **Router**: ``router = console_router()`` (or ``console_router(admin_only=True)``) from
  ``console.auth``: prefix ``/admin``; signed out, a GET redirects (303) to
  ``/admin/login?next=<path>``; every POST/PUT/PATCH/DELETE is refused (403) without a
  session, without the session's CSRF token or from another origin, before the route runs. Add the module's
  router to ``ROUTERS`` below; the app includes them in order.
- **Auth**: take ``user: CurrentEditor`` (or ``CurrentAdmin``) for the signed-in editor;
  ``user.actor`` is who to name in ``audit.record(session, user.actor.name, action, target,
  details, user.actor.ip)`` for anything the page changes (in the same transaction).
- **Template**: ``render(request, user, "editions.html", **context)`` renders
  ``templates/console/editions.html``, which ``{% extends "console/base.html" %}`` and fills
  ``{% block title %}`` and ``{% block main %}``. Mark the nav item with
  ``{% set section = "editions" %}``. Times: ``{{ value|local_time }}`` (TIMEZONE).
- **CSRF**: every form that changes something includes ``{% include
  "console/_csrf.html" %}``; htmx requests carry the token by themselves (``hx-headers``
  on <body>). No inline script or style: the console's CSP allows only our own files
  (``/static/console.css``, ``/static/vendor/htmx.min.js``, a page's own file under
  ``/static/console/``).
- **Pagination**: ``pages = Pages(number, total, params=(("actor", actor), …))`` from
  ``console.pagination`` (``PageNumber`` for the query parameter), query with
  ``.limit(pages.per_page).offset(pages.offset)``, and ``{% include
  "console/_pagination.html" %}``.
- **Errors**: raise a ``newsletter.errors`` class; the app's handler shows the console's
  error page with its status (a form that can be corrected should instead re-render itself
  with ``errors={field: message}`` and what was typed).
"""

from __future__ import annotations

from fastapi import APIRouter

from newsletter.web.console import (
    articles,
    audit_log,
    dashboard,
    deliverability,
    editions,
    editors,
    feeds,
    imports,
    previews,
    readers,
    signin,
    tokens,
    topics,
    webhooks,
)

# imports before readers: /admin/readers/import is not a reader's id.
ROUTERS: tuple[APIRouter, ...] = (
    signin.router, dashboard.router, editions.router, previews.router, audit_log.router,
    editors.router, tokens.router, topics.router,
    articles.router, imports.router, readers.router, feeds.router, deliverability.router,
    deliverability.admin_router, webhooks.router,
)
