"""Pages anyone may open: the licenses of the front-end files the console ships."""

from __future__ import annotations

from starlette.responses import Response

from api.console.render import STATIC_DIR
from api.console.web import page_of
from api.operation import Call

VENDOR = STATIC_DIR / "vendor"


def licenses(call: Call) -> Response:
    texts = [(p.name.removesuffix(".LICENSE"), p.read_text()) for p in sorted(VENDOR.glob("*.LICENSE"))]
    return page_of(call).render("licenses.html", licenses=texts)
