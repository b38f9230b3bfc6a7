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
    """Each field given is one audited ledger change; the answer is the user after all of them."""
    ledger, name, body = services(call).ledger, call.params["name"], call.body
    user = ledger.get_user(name)
    audit = {"actor": call.actor, "request_id": call.request_id}
    if "exempt" in body:
        user = ledger.set_exempt(name, body["exempt"], **audit)
    if "credit_limit" in body:
        limit = body["credit_limit"]
        user = ledger.set_credit_limit(name, None if limit is None else parse_amount(limit), **audit)
    if "project" in body:
        user = ledger.assign_project(name, body["project"], **audit)
    return render.user(user)


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
