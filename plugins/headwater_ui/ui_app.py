"""The Headwater page's FastAPI app: the page, its figures as JSON, and who may see them.

Airflow mounts a plugin's app as it is: no dependency of its own API reaches the app's routes, so
without one of its own every route here would answer anyone. `create_app` therefore takes the
access check as a dependency of the whole app; ui_plugin.py hands in Airflow's own (the login the
UI's cookie or a bearer token carries, then the auth manager's custom-view permission), unit tests
a fake. A browser that is not logged in is sent to Airflow's login page and back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from headwater_ui.ui_page import render_page

URL_PREFIX = "/headwater"
# The name the auth manager is asked about (is_authorized_custom_view).
RESOURCE_NAME = "Headwater"

ReadSummary = Callable[[str], dict[str, Any]]

_ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" '
    'stroke="#0b72c4" stroke-width="2" stroke-linejoin="round">'
    '<path d="M12 2.5C9 7 5.5 10.5 5.5 14.5a6.5 6.5 0 0 0 13 0C18.5 10.5 15 7 12 2.5z"/>'
    '<path d="M8.5 15a3.5 3.5 0 0 0 3.5 3.5"/></svg>'
)


def airflow_root(request: Request) -> str:
    """The Airflow UI's root path as this request sees it ("/" or "/some/base/")."""
    root = str(request.scope.get("root_path") or "").removesuffix(URL_PREFIX)
    return root.rstrip("/") + "/"


def create_app(
    read_summary: ReadSummary,
    require_access: Callable[..., Any],
    login_url: Callable[[str], str] | None = None,
    close: Callable[[], None] | None = None,
) -> FastAPI:
    """The app: `read_summary(airflow_root)` builds the figures; `require_access` is a FastAPI
    dependency that raises HTTPException 401/403 for a caller who may not see them;
    `login_url(next_url)` is where a browser without a login is sent; `close` runs when the
    API server stops (Airflow runs the lifespan of every app it mounts)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if close is not None:
            close()

    app = FastAPI(
        title="Headwater",
        lifespan=lifespan,
        dependencies=[Depends(require_access)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(HTTPException)
    async def _login_first(request: Request, exc: HTTPException) -> Response:
        root = str(request.scope.get("root_path") or "")
        path = request.url.path
        wants_page = (path[len(root) :] if path.startswith(root) else path) in ("", "/")
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_page and login_url:
            return RedirectResponse(login_url(str(request.url)), status.HTTP_303_SEE_OTHER)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.get("/api/summary")
    def summary(request: Request) -> JSONResponse:
        """Per source: last reconciled window, lag per partition; health checks; DAG links."""
        return JSONResponse(read_summary(airflow_root(request)))

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        """The page, rendered from the same summary the JSON API answers with."""
        return HTMLResponse(render_page(read_summary(airflow_root(request))))

    @app.get("/icon.svg")
    def icon() -> Response:
        return Response(_ICON, media_type="image/svg+xml")

    return app
