"""People admin pages: one billing user (exemption, credit limit, project: the API's PATCH /v1/users/NAME),
creating users and projects, the projects list, and the node account -> billing user map. Every form runs
its API operation (api.console.pages.operate)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from api.console.pages import operate
from api.console.web import page_of, see_other
from api.handlers.settings import thresholds_in_force
from api.operation import Call
from api.services import services
from ledger.money import format_amount


def user(call: Call) -> Response:
    page, svc, name = page_of(call), services(call), call.params["name"]
    found = svc.ledger.get_user(name)
    credit = "" if found.credit_limit is None else format_amount(found.credit_limit)
    return page.render("people/user.html", user=found, standing=svc.ledger.standing(name, thresholds_in_force(call)),
                       credit_text=credit,
                       projects=svc.ledger.list_projects(),
                       mappings=[m for m in svc.ledger.list_mappings() if m.user == name])


def update_user(call: Call) -> Response:
    """The form shows every field, so it sends every field: an empty credit limit is none, no project is none."""
    form = call.body
    body: dict[str, Any] = {"exempt": form.get("exempt") == "on",
                            "credit_limit": form.get("credit_limit", "").strip() or None,
                            "project": form.get("project", "").strip() or None}
    operate.run(call, "update_user", body)
    return see_other(f"/admin/users/{call.params['name']}")


def create_user(call: Call) -> Response:
    made = operate.run(call, "create_user", operate.fields(call.body, "name", "display_name"))
    return see_other(f"/admin/users/{made['name']}")


def projects(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    thresholds = thresholds_in_force(call)
    members: dict[str, list[str]] = {}
    for u in svc.ledger.list_users():
        if u.project is not None:
            members.setdefault(u.project, []).append(u.name)
    listed = [(p, svc.ledger.balance(f"project:{p.name}", thresholds), members.get(p.name, []))
              for p in svc.ledger.list_projects()]
    return page.render("people/projects.html", projects=listed)


def create_project(call: Call) -> Response:
    operate.run(call, "create_project", operate.fields(call.body, "name", "display_name"))
    return see_other("/admin/projects")


def mappings(call: Call) -> Response:
    page, svc = page_of(call), services(call)
    return page.render("people/mappings.html", mappings=svc.ledger.list_mappings(),
                       users=[u.name for u in svc.ledger.list_users()])


def put_mapping(call: Call) -> Response:
    operate.run(call, "put_mapping", operate.fields(call.body, "node", "linux_user", "user"))
    return see_other("/admin/mappings")
