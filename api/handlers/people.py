"""Billing users, projects and the node account -> billing user map (admin-approved only)."""

from __future__ import annotations

from typing import Any

from api import render
from api.operation import Call
from api.services import services
from ledger.money import parse_amount


def list_users(call: Call) -> Any:
    return [render.user(u) for u in services(call).ledger.list_users()]


def create_user(call: Call) -> Any:
    body = call.body
    return render.user(services(call).ledger.add_user(
        body["name"], display_name=body.get("display_name", ""), actor=call.actor, request_id=call.request_id))


def get_user(call: Call) -> Any:
    return render.user(services(call).ledger.get_user(call.params["name"]))


def update_user(call: Call) -> Any:
    """The fields given change together: one transaction, one ledger audit row (``user.update``) with the
    before and after of every field changed."""
    svc, name, body = services(call), call.params["name"], call.body
    changes: dict[str, Any] = {}
    if "exempt" in body:
        changes["exempt"] = body["exempt"]
    if "credit_limit" in body:
        limit = body["credit_limit"]
        changes["credit_limit"] = None if limit is None else parse_amount(limit)
    if "project" in body:
        changes["project"] = body["project"]
    return render.user(svc.ledger.update_user(name, actor=call.actor, request_id=call.request_id, **changes))


def list_projects(call: Call) -> Any:
    return [render.project(p) for p in services(call).ledger.list_projects()]


def create_project(call: Call) -> Any:
    body = call.body
    return render.project(services(call).ledger.add_project(
        body["name"], display_name=body.get("display_name", ""), actor=call.actor, request_id=call.request_id))


def list_mappings(call: Call) -> Any:
    return [render.mapping(m) for m in services(call).ledger.list_mappings()]


def put_mapping(call: Call) -> Any:
    body = call.body
    return render.mapping(services(call).ledger.map_linux_user(
        body["node"], body["linux_user"], body["user"], actor=call.actor, request_id=call.request_id))
