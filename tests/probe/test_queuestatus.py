"""``queue-status``: the controller's queue answer for one user, validated and written as ``<uid>.queue``."""

import json
import os
import stat

import pytest

from probe import queuestatus
from tests.probe.support import needs_root, run_node

pytestmark = [needs_root, pytest.mark.root]
NONCE = "n0nce_" + "b" * 16


def _request(**changes):
    request = {"id": 12, "nonce": NONCE, "state": "queued", "position": 3, "eta": 1764675000,
               "eta_basis": "declared ends of 2 grants", "gpus": [], "offer_expires": None, "ends": None, "reason": ""}
    request.update(changes)
    return request


def _document(user, *requests, **changes):
    document = {"version": 1, "uid": user.pw_uid, "user": user.pw_name, "updated_at": 1764672000,
                "requests": list(requests)}
    document.update(changes)
    return document


@pytest.fixture
def status_config(tmp_path, write_config):
    status_dir = tmp_path / "status"
    return write_config(status_dir=str(status_dir)), status_dir


def _send(script, config, uid, document, *flag):
    raw = json.dumps(document).encode() if not isinstance(document, bytes) else document
    return run_node(script, ["--config", str(config), "queue-status", *flag, str(uid)], stdin=raw)


def test_the_file_is_root_owned_atomic_and_the_documented_format(node_script, status_config, test_users):
    config, status_dir = status_config
    user = test_users[0]
    gpus = [{"node": "n1", "index": 0, "model": "rtx3090"}, {"node": "n1", "index": 3, "model": "rtx3090"}]
    document = _document(user, _request(), _request(id=13, state="granted", position=None, eta=None, eta_basis="",
                                                    gpus=gpus, ends=1764686400))
    status, result, stderr = _send(node_script, config, user.pw_uid, document, "--uid")
    assert (status, result["changed"]) == (0, True), (result, stderr)
    path = status_dir / f"{user.pw_uid}.queue"
    assert result["path"] == str(path)
    info = path.lstat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o644)
    assert path.read_text() == (
        f"version=1\nuser={user.pw_name}\nuid={user.pw_uid}\nupdated_at=1764672000\nactive=2\n"
        "summary=request 13 granted: n1 GPU 0 (rtx3090), n1 GPU 3 (rtx3090) until 2025-12-02 14:40 UTC\n"
        "requests=12,13\n"
        f"request.12.nonce={NONCE}\nrequest.12.state=queued\nrequest.12.position=3\nrequest.12.eta=1764675000\n"
        "request.12.eta_basis=declared ends of 2 grants\nrequest.12.gpus=\nrequest.12.offer_expires=\n"
        "request.12.ends=\nrequest.12.reason=\n"
        f"request.13.nonce={NONCE}\nrequest.13.state=granted\nrequest.13.position=\nrequest.13.eta=\n"
        "request.13.eta_basis=\nrequest.13.gpus=n1:0:rtx3090,n1:3:rtx3090\nrequest.13.offer_expires=\n"
        "request.13.ends=1764686400\nrequest.13.reason=\n")
    assert _send(node_script, config, user.pw_uid, document)[1]["changed"] is False
    assert [name for name in os.listdir(status_dir) if name.startswith(".")] == []


def test_summaries_name_the_most_advanced_active_request():
    offered = _request(id=5, state="offered", gpus=[{"node": "n2", "index": 1, "model": "a100"}],
                       offer_expires=1764673000)
    assert queuestatus.summary([_request(), offered]) == (
        "request 5 offered: n2 GPU 1 (a100); claim it by 2025-12-02 10:56 UTC (gpu-request --claim 5)")
    assert queuestatus.summary([_request()]) == (
        "request 12 queued at position 3, about 2025-12-02 11:30 UTC (declared ends of 2 grants)")
    assert queuestatus.summary([_request(state="ended"), _request(id=2, state="refused", reason="no such model")]) == ""


@pytest.mark.parametrize(("change", "problem"), [
    ({"uid": 1}, "uid: must be the command's uid"),
    ({"user": "someone-else"}, "user: 'someone-else' is not uid"),
    ({"version": 2}, "version: must be 1"),
    ({"extra": 1}, "extra: unknown key"),
    ({"requests": [_request(state="lost")]}, "requests[0].state"),
    ({"requests": [_request(position=-1)]}, "requests[0].position"),
    ({"requests": [_request(eta="soon")]}, "requests[0].eta"),
    ({"requests": [_request(reason="a\nb")]}, "requests[0].reason: contains a control character"),
    ({"requests": [_request(gpus=[{"node": "n1", "index": 254, "model": "x"}])]}, "GPU index"),
    ({"requests": [_request(gpus=[{"node": "n 1", "index": 0, "model": "x"}])]}, "node and model"),
    ({"requests": [_request(nonce="x")]}, "requests[0].nonce"),
    ({"requests": [_request(), _request()]}, "an id is repeated"),
    ({"requests": [_request()] * 65}, "at most 64"),
])
def test_a_bad_document_is_refused_and_nothing_is_written(node_script, status_config, test_users, change, problem):
    config, status_dir = status_config
    user = test_users[0]
    status, result, _ = _send(node_script, config, user.pw_uid, {**_document(user), **change})
    assert (status, result["error"]["reason"]) == (2, "bad_document")
    assert problem in result["error"]["detail"], result
    assert not (status_dir / f"{user.pw_uid}.queue").exists()


def test_floats_and_system_users_are_refused(node_script, status_config, test_users):
    config, _ = status_config
    user = test_users[0]
    raw = json.dumps(_document(user, _request())).replace('"position": 3', '"position": 3.0').encode()
    assert _send(node_script, config, user.pw_uid, raw)[1]["error"]["reason"] == "bad_document"
    assert _send(node_script, config, 0, _document(user))[1]["error"]["reason"] == "protected_identity"
