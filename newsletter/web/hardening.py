"""What every answer carries, and the operator pages that are not for the public.

Headers: ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy on everything
(the console's own under /admin, which allows our vendored scripts and is never framed),
``Referrer-Policy: no-referrer`` on pages whose URL holds a reader's token (a click from
them would hand the token to the next site). Only the sign-up box under /embed/ may be
framed, by the site origins in EMBED_ORIGINS (default none); every other page says
``frame-ancestors 'none'``: a framed preferences or console page is a clickjacking target.

``/metrics``, ``/docs`` and ``/openapi.json`` map the service for an attacker (every route,
every counter): they answer to the admin bearer token (``/metrics`` also to METRICS_TOKEN,
for a scraper), or to anyone with METRICS_PUBLIC / DOCS_PUBLIC.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from newsletter.config import get_settings
from newsletter.redaction import SECRET_PREFIXES, install_access_log_redaction

# Our pages: one stylesheet of our own, forms that post to us, and only our own scripts
# (static/timezone.js fills the form's time zone; nothing inline, no eval).
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "form-action 'self'; base-uri 'none'")
# The sign-up box other sites frame: a page's policy plus our own scripts (one sizes the
# frame, one fills in the reader's time zone); still no inline script.
EMBED_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "form-action 'self'; base-uri 'none'")
# The newsroom console: our stylesheet and our own vendored scripts (htmx), requests back to
# us; no inline script or style, no eval. Never framed (a framed console is a clickjacking
# target).
CONSOLE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                  "connect-src 'self'; form-action 'self'; base-uri 'none'; "
                  "frame-ancestors 'none'")
# An email shown in the browser: its CSS is inlined (style attributes and a <style> of
# media queries) and its pictures come from the newsroom's CDN; still no script, no forms.
EMAIL_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
                "form-action 'none'; base-uri 'none'")
# Swagger UI: its bundle from jsDelivr and the inline script that starts it.
DOCS_POLICY = ("default-src 'none'; script-src 'unsafe-inline' https://cdn.jsdelivr.net; "
               "style-src 'unsafe-inline' https://cdn.jsdelivr.net; "
               "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
               "base-uri 'none'")
TOKEN_PAGES = tuple(p for p in SECRET_PREFIXES if not p.startswith("/api/"))


def frame_ancestors(path: str) -> str:
    """Who may put a page in a frame: the one place that decides it."""
    if is_embed(path):
        return " ".join(get_settings().embed_origins) or "'none'"
    return "'none'"


def is_console(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


def is_embed(path: str) -> bool:
    return path.startswith("/embed/")


def policy_for(path: str) -> str:
    if is_console(path):
        return CONSOLE_POLICY
    if path.startswith("/emails/"):
        base = EMAIL_POLICY
    elif path == "/docs":
        base = DOCS_POLICY
    elif is_embed(path):
        base = EMBED_POLICY
    else:
        base = PAGE_POLICY
    return f"{base}; frame-ancestors {frame_ancestors(path)}"


class SecurityHeaders:
    """Pure ASGI middleware (no per-request task or body copy, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._headers: dict[tuple[str, bool], list[tuple[bytes, bytes]]] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._for(scope.get("path", ""))

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _for(self, path: str) -> list[tuple[bytes, bytes]]:
        token_page = path.startswith(TOKEN_PAGES)
        kind = ("/admin" if is_console(path) else "/emails/" if path.startswith("/emails/") else
                "/docs" if path == "/docs" else "/embed/" if is_embed(path) else "")
        key = (kind, token_page)
        if key not in self._headers:
            self._headers[key] = [
                (b"x-content-type-options", b"nosniff"),
                (b"content-security-policy", policy_for(path).encode()),
                (b"referrer-policy",
                 b"no-referrer" if token_page else b"strict-origin-when-cross-origin"),
            ]
            if kind == "/admin":  # readers' data and one-time tokens: never in a cache
                self._headers[key].append((b"cache-control", b"no-store"))
        return self._headers[key]


def _bearer(request: Request) -> str:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _allowed(request: Request, *secrets: str) -> bool:
    given = _bearer(request).encode()
    # Every configured secret is compared (constant time each); an unset one opens nothing.
    return any(hmac.compare_digest(given, s.encode()) for s in secrets if s) and bool(given)


def _refuse(what: str, setting: str) -> HTTPException:
    return HTTPException(401, f"{what} needs the admin bearer token (or {setting}=true)",
                         headers={"WWW-Authenticate": "Bearer"})


def metrics_reader(request: Request) -> None:
    """Let through the admin token, METRICS_TOKEN, or anyone with METRICS_PUBLIC."""
    settings = get_settings()
    if not (settings.metrics_public
            or _allowed(request, settings.admin_token, settings.metrics_token)):
        raise HTTPException(401, "/metrics needs the admin bearer token or METRICS_TOKEN "
                                 "(or NEWSLETTER_METRICS_PUBLIC=true)",
                            headers={"WWW-Authenticate": "Bearer"})


def docs_reader(request: Request) -> None:
    """Let through the admin token, or anyone with DOCS_PUBLIC."""
    settings = get_settings()
    if not (settings.docs_public or _allowed(request, settings.admin_token)):
        raise _refuse("the API description", "NEWSLETTER_DOCS_PUBLIC")


def install(app: FastAPI) -> None:
    """Headers on every answer, redacted access logs, and the guarded operator pages. The
    app is made with ``openapi_url=None, docs_url=None, redoc_url=None``: these replace them."""
    install_access_log_redaction()
    app.add_middleware(SecurityHeaders)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(docs_reader)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=[Depends(docs_reader)])
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} API")
