"""Templates (Jinja2, autoescaped, the i18n extension) and the headers every console response carries."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, Response

STATIC_DIR = Path(__file__).with_name("static")
TEMPLATE_DIR = Path(__file__).with_name("templates")
# No inline script or style anywhere: everything the page runs or styles with is a file this app serves.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none';"
       " form-action 'self'; base-uri 'none'; object-src 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}


@functools.cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=select_autoescape(default=True),
                      extensions=["jinja2.ext.i18n"], undefined=StrictUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.globals["static"] = static_url
    return env


@functools.cache
def static_url(name: str) -> str:
    """The URL of a static file. Vendored files carry their version in the name; the console's own get a hash
    of their content in the query, so both can be cached for a year (api.console.static)."""
    path = STATIC_DIR / name
    if name.startswith("vendor/"):
        return f"/static/{name}"
    return f"/static/{name}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def page(template: str, context: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    html = environment().get_template(template).render(context)
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
