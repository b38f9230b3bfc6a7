"""The browsable API documentation at ``/docs``: Swagger UI from the ``swagger-ui-py`` package's static files
(served by the app, never a CDN) over ``/openapi.json``. Public, like the document it shows: it holds no data,
and "Try it out" sends the bearer token a reader types in to this same server.

The page is a fixed HTML with no inline script, so the Content-Security-Policy allows scripts from this
origin only; styles may be inline because Swagger UI sets style attributes as it renders. The validator
badge is off (it would send the document to a third-party server)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
       " connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gpuledger API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"""

_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null
  });
});
"""

# The only files served from the package: what the page loads.
_ASSETS = {"swagger-ui.css": "text/css; charset=utf-8", "swagger-ui-bundle.js": "text/javascript; charset=utf-8"}


def _static_dir() -> Path:
    """The package's static folder, found without importing it (its __init__ pulls in web-framework glue)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed (a dependency of gpuledger)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def routes() -> list[Route]:
    static = _static_dir()
    missing = [name for name in _ASSETS if not (static / name).is_file()]
    if missing:
        raise RuntimeError(f"swagger-ui-py lacks {', '.join(missing)} in {static}")

    async def page(request: Request) -> Response:
        return Response(_PAGE, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def init(request: Request) -> Response:
        return Response(_INIT, media_type="text/javascript; charset=utf-8", headers=HEADERS)

    def asset(name: str) -> Route:
        async def serve(request: Request) -> Response:
            return FileResponse(static / name, media_type=_ASSETS[name], headers=HEADERS)
        return Route(f"/docs/{name}", serve, methods=["GET"])

    return [Route("/docs", page, methods=["GET"]), Route("/docs/init.js", init, methods=["GET"]),
            *(asset(name) for name in _ASSETS)]
