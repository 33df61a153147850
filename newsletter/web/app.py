"""The web app: reader pages, the admin API, health."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text

from newsletter.config import DEV_SECRET_KEY, get_settings
from newsletter.web import api, api_privacy, pages
from newsletter.web.deps import HERE, SessionDep

log = logging.getLogger(__name__)


def create_app() -> FastAPI:
    settings = get_settings()
    if settings.secret_key == DEV_SECRET_KEY:
        log.warning("NEWSLETTER_SECRET_KEY is not set: links are signed with a development key")
    app = FastAPI(title="newsletter", version="0.1.0")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(api_privacy.router)

    @app.get("/healthz")
    def healthz(session: SessionDep) -> JSONResponse:
        try:
            session.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check: database unreachable")
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    return app


app = create_app()
