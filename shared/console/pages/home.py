"""The console's front page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from shared.console.pages.common import begin
from shared.console.web import render

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    await begin(request)
    return render(request, "home.html", title="Segment Export for Dynamics 365 Sales")
