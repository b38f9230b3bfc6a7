"""The pipeline every console page and form runs (the API's is api.app._handle): find the session, send a
stranger to /login, check the role (or ownership, for role user) from the same route table as the API, check
CSRF on a POST, run the handler in a thread, and answer in HTML, errors included."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from api.console import csrf, i18n, render, sessions
from api.errors import ApiError, from_ledger
from api.operation import Call, Operation
from api.services import Services
from ledger.errors import LedgerError

SESSION_COOKIE = "gl_session"
THEME_COOKIE = "gl_theme"
THEMES = ("auto", "light", "dark")
YEAR_S = 365 * 86_400


@dataclass(frozen=True)
class Input:
    """The API's own input steps, reused: query and path text (unknown parameters refused), its typed
    parameters (the same parsing and schemas), and the body under the API's size limit."""

    raw_params: Callable[[], dict[str, str]]
    parse: Callable[[Mapping[str, str]], dict[str, Any]]
    body: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class PageRequest:
    """What a page handler gets beside its parameters: who asks, in which language and theme, and the CSRF
    token its forms must carry."""

    request: Request
    session: sessions.Session | None
    language: str
    theme: str
    csrf: str
    formats: i18n.Formats
    secure: bool

    @property
    def principal(self) -> sessions.WebPrincipal | None:
        return self.session.principal if self.session else None

    def context(self, **extra: Any) -> dict[str, Any]:
        cat = i18n.catalog(self.language)
        return {"_": cat.gettext, "gettext": cat.gettext, "ngettext": cat.ngettext, "lang": self.language,
                "html_lang": self.language.replace("_", "-"), "languages": i18n.NAMES, "theme": self.theme,
                "themes": THEMES, "principal": self.principal, "csrf": self.csrf, "fmt": self.formats,
                "path": self.request.url.path, "here": _here(self.request), **extra}

    def render(self, template: str, status: int = 200, **extra: Any) -> Response:
        return render.page(template, self.context(**extra), status)


def page_of(call: Call) -> PageRequest:
    page = call.console
    assert isinstance(page, PageRequest)
    return page


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def set_cookie(response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="strict")


def safe_next(target: str | None) -> str:
    """Only a path on this site (not ``//host`` or a scheme), so a login link cannot send anyone elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def see_other(target: str) -> Response:
    return RedirectResponse(safe_next(target), status_code=303, headers=render.SECURITY_HEADERS)


async def handle(op: Operation, svc: Services, request: Request, given: Input) -> Response:
    config = svc.config
    secure = config.console_secure_cookies or request.url.scheme == "https"
    cookie = request.cookies.get(SESSION_COOKIE)
    idle = timedelta(seconds=config.console_idle_seconds)
    session = None
    if cookie:
        def find() -> sessions.Session | None:
            with svc.write() as conn:
                return sessions.lookup(conn, cookie, idle=idle)
        session = await to_thread.run_sync(find, limiter=svc.threads)
    pre = request.cookies.get(csrf.PRE_COOKIE) or ""
    fresh_pre = None if pre else csrf.new_secret()
    language = i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language", ""))
    theme = request.cookies.get(THEME_COOKIE) if request.cookies.get(THEME_COOKIE) in THEMES else "auto"
    form_csrf = session.csrf if session else (pre or fresh_pre or "")
    page = PageRequest(request, session, language, theme or "auto", form_csrf,
                       i18n.Formats(language, svc.ledger.config.currency, svc.ledger.config.timezone), secure)
    response = await _run(op, svc, request, page, given)
    if fresh_pre:
        set_cookie(response, csrf.PRE_COOKIE, fresh_pre, secure=secure)
    if cookie and session is None and not op.public:
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _run(op: Operation, svc: Services, request: Request, page: PageRequest, given: Input) -> Response:
    try:
        raw = given.raw_params()
        principal = page.principal
        if not op.public:
            if principal is None:
                return RedirectResponse("/login?next=" + quote(_here(request), safe="/"), status_code=302,
                                        headers=render.SECURITY_HEADERS)
            if principal.role not in op.roles:
                bound = op.own.bind(principal, raw) if op.own and principal.role == "user" else None
                if bound is None:
                    return error(page, 403, "forbidden")
                raw = bound
        params = given.parse(raw)
        form: dict[str, str] = {}
        if op.method == "POST":
            form = parse_form(await given.body())
            if not csrf.valid(form.get(csrf.FIELD), page.csrf):
                return error(page, 403, "csrf")
        call = Call(None, params, form, uuid.uuid4().hex, None, svc, page)
        result: Response = await to_thread.run_sync(op.handler, call, limiter=svc.threads)
        return result
    except ApiError as err:
        return error(page, err.status, err.code, err.message)
    except LedgerError as exc:
        translated = from_ledger(exc, svc.ledger.config.currency)
        return error(page, translated.status, translated.code, translated.message)


def parse_form(raw: bytes) -> dict[str, str]:
    """An urlencoded form (the only kind the console's forms send); a field given twice keeps its first value."""
    form: dict[str, str] = {}
    for name, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
        form.setdefault(name, value)
    return form


def error(page: PageRequest, status: int, code: str, detail: str = "") -> Response:
    return page.render("error.html", status, status_code=status, code=code, detail=detail)
