"""The console's landing page: where to go from here."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from newsletter.web.console.auth import CurrentEditor, console_router, render

router = console_router()


@router.get("", response_class=HTMLResponse)
def home(request: Request, user: CurrentEditor) -> HTMLResponse:
    return render(request, user, "home.html", section="home")
