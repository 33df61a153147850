"""The web app: reader pages, the newsroom console, the admin API, health."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from newsletter import db, events, logs
from newsletter.config import DEV_SECRET_KEY, get_settings
from newsletter.errors import NewsletterError
from newsletter.insight import clicks as click_counts
from newsletter.metrics import exposition
from newsletter.web import (
    api,
    api_audit,
    api_bounces,
    api_privacy,
    api_stats,
    api_topics,
    api_webhooks,
    clicks,
    console,
    embed,
    hardening,
    pages,
    reader_data,
)
from newsletter.web.bodies import BodyLimit
from newsletter.web.deps import HERE, SessionDep, newsletter_error

log = logging.getLogger(__name__)


def create_app() -> FastAPI:
    settings = get_settings()
    logs.configure()
    settings.ensure_var()
    if settings.secret_key == DEV_SECRET_KEY:
        log.warning("NEWSLETTER_SECRET_KEY is not set: links are signed with a development key")
    # The API description and its pages are served by hardening, behind the admin token.
    app = FastAPI(title="newsletter", version="0.1.0", lifespan=_lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit)  # every body is counted before anything parses it
    # Installed after, so its headers wrap every answer, a 413 of BodyLimit's included.
    hardening.install(app)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    # Every domain error, mapped to its status in one place (errors.py draws the tree).
    app.add_exception_handler(NewsletterError, newsletter_error)
    app.include_router(pages.router)
    app.include_router(embed.router)  # the sign-up box other sites frame, and its script
    app.include_router(reader_data.router)
    app.include_router(api.router)
    app.include_router(api_privacy.router)
    app.include_router(api_bounces.router)
    app.include_router(api_audit.router)
    app.include_router(api_stats.router)
    for router in console.ROUTERS:  # the newsroom console, /admin
        app.include_router(router)
    app.include_router(api_topics.router)
    app.include_router(clicks.router)  # story links, /r/
    app.include_router(clicks.api_router)
    app.include_router(api_webhooks.router)

    @app.get("/healthz")
    def healthz(session: SessionDep) -> JSONResponse:
        """Liveness: the process answers and reaches its database."""
        try:
            session.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check: database unreachable")
            return JSONResponse({"status": "unhealthy", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    @app.get("/readyz")
    def readyz(session: SessionDep) -> JSONResponse:
        """Readiness: the database and the broker both answer (else take no traffic)."""
        checks = {"database": _check(lambda: session.execute(text("SELECT 1"))),
                  "broker": _check(_ping_broker)}
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unready", **checks}, 200 if ok else 503)

    @app.get("/metrics", include_in_schema=False,
             dependencies=[Depends(hardening.metrics_reader)])
    def metrics() -> Response:
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # A sync route runs in a thread and uses one pooled connection at a time. Beyond the
    # connections the pool keeps, anyio's 40 threads only queue on the pool or open
    # overflow connections that close again on return (a new PostgreSQL backend each,
    # ~1.5/s under the subscribe benchmark), and the slowest requests waited longest.
    pool_size = getattr(db.get_engine().pool, "size", None)
    if callable(pool_size):
        anyio.to_thread.current_default_thread_limiter().total_tokens = max(pool_size(), 2)
    # A request answers once its transaction has committed; its events go to the broker
    # from a thread of this process (see events._Background). Stopping, send what is left.
    events.dispatch_in_background()
    # What is loaded by now (the app, its routes and templates, SQLAlchemy's and FastAPI's
    # machinery) lives as long as the process: moved out of the collector's sight, a full
    # collection no longer walks it. Those walks stopped every request in the process for
    # 100–150 ms a few times a minute under load (subscribe p99 at 300/s: 116–138 ms
    # before, 64–81 ms after; bench/RESULTS.md).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        events.dispatch_in_background(False)
        click_counts.stop()  # the clicks counted since the last flush, written


def _check(probe) -> str:
    try:
        probe()
    except Exception as exc:  # the reason, not the traceback: this answer is public
        log.warning("readiness probe failed: %s", type(exc).__name__)
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def _ping_broker() -> None:
    settings = get_settings()
    if settings.uses_embedded_broker:
        folder = settings.broker_dir / "queue"
        if not (folder.is_dir() and os.access(folder, os.W_OK)):
            raise FileNotFoundError(folder)
        return
    import redis

    client = redis.Redis.from_url(settings.broker, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


app = create_app()
