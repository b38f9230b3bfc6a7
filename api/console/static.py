"""The console's static files, served by the app itself (no CDN): a year's cache for a vendored file (its
version is in its name) or for a file asked for by its current content hash (``render.static_url``);
anything else must be revalidated."""

from __future__ import annotations

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from api.console.render import STATIC_DIR, static_url

YEAR = "public, max-age=31536000, immutable"


class ConsoleStatic(StaticFiles):
    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        query = scope.get("query_string", b"").decode()
        versioned = path.startswith("vendor/") or (
            response.status_code == 200 and query and static_url(path).endswith("?" + query))
        response.headers["Cache-Control"] = YEAR if versioned else "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
