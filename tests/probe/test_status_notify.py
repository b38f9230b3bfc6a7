"""``status-write`` (docs/status-file.md) and ``notify`` through the node command, as root."""

import json
import os
import pty
import select
import stat

import pytest

from tests.probe.support import needs_root, run_node

pytestmark = [needs_root, pytest.mark.root]


def _document(account, **changes):
    document = {
        "version": 1,
        "user": account.pw_name,
        "uid": account.pw_uid,
        "billing_user": "alice",
        "updated_at": 1764000000,
        "tier": "warning",
        "balance": "8.420000",
        "currency": "CNY",
        "burn_rate_per_hour": "1.200000",
        "time_to_empty_hours": "7.0",
        "gpu_blocked": False,
        "cpu_quota_percent": None,
        "kill_at": None,
        "notice": "Your balance is below 10 CNY.",
        "recharge_hint": "Ask your PI or write to gpu-admin@lab.example to recharge.",
    }
    document.update(changes)
    return document


@pytest.fixture
def status_config(tmp_path):
    status_dir = tmp_path / "run" / "status"
    config = tmp_path / "node.json"
    config.write_text(json.dumps({"status_dir": str(status_dir)}))
    return config, status_dir


def _write(script, config, uid, document):
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return run_node(script, ["--config", str(config), "status-write", str(uid)], stdin=raw)


def test_the_file_is_exactly_the_documented_format(test_users, status_config, node_script):
    config, status_dir = status_config
    user = test_users[0]
    status, result, _ = _write(node_script, config, user.pw_uid, _document(user))
    assert (status, result["changed"]) == (0, True)
    path = status_dir / f"{user.pw_uid}.status"
    assert path.read_text() == (
        f"version=1\nuser={user.pw_name}\nuid={user.pw_uid}\nbilling_user=alice\nupdated_at=1764000000\n"
        "tier=warning\nbalance=8.420000\ncurrency=CNY\nburn_rate_per_hour=1.200000\ntime_to_empty_hours=7.0\n"
        "gpu_blocked=0\ncpu_quota_percent=\nkill_at=\nnotice=Your balance is below 10 CNY.\n"
        "recharge_hint=Ask your PI or write to gpu-admin@lab.example to recharge.\n"
    )
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o644)
    assert stat.S_IMODE(status_dir.stat().st_mode) == 0o755
    status, result, _ = _write(node_script, config, user.pw_uid, _document(user))
    assert (status, result["changed"]) == (0, False)
    assert sorted(os.listdir(status_dir)) == [path.name]  # no temporary file left behind


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"balance": 8.42}, "floats are not accepted"),
        ({"notice": "line one\nuser=root"}, "notice: contains a control character"),
        ({"notice": "\x1b]0;owned\x07"}, "notice: contains a control character"),
        ({"tier": "vip"}, "tier: must be one of"),
        ({"extra": "1"}, "extra: unknown key"),
        ({"uid": 0}, "does not match the command's uid"),
        ({"user": "root"}, "is not uid"),
        ({"gpu_blocked": 1}, "gpu_blocked: must be true or false"),
        ({"currency": "cny"}, "currency: must be an ISO 4217 code"),
        ({"notice": "x" * 301}, "notice: longer than 300 characters"),
    ],
)
def test_bad_documents_are_refused_and_write_nothing(test_users, status_config, node_script, changes, problem):
    config, status_dir = status_config
    user = test_users[0]
    status, result, stderr = _write(node_script, config, user.pw_uid, _document(user, **changes))
    assert (status, result["error"]["reason"]) == (2, "bad_document")
    assert problem in result["error"]["detail"]
    assert "refused bad_document" in stderr
    assert not (status_dir / f"{user.pw_uid}.status").exists()


def test_not_json_and_oversize_are_refused(test_users, status_config, node_script):
    config, _ = status_config
    uid = test_users[0].pw_uid
    for raw in (b"version=1", b"\xff\xfe", b"[]", b" " * (64 * 1024 + 1)):
        status, result, _ = _write(node_script, config, uid, raw)
        assert (status, result["error"]["reason"]) == (2, "bad_document")


def test_a_symlinked_or_writable_status_dir_is_refused(test_users, status_config, node_script, tmp_path):
    config, status_dir = status_config
    user = test_users[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    status_dir.parent.mkdir(parents=True)
    status_dir.symlink_to(elsewhere)
    status, result, _ = _write(node_script, config, user.pw_uid, _document(user))
    assert (status, result["error"]["reason"]) == (3, "unsafe_status_dir")
    assert os.listdir(elsewhere) == []
    status_dir.unlink()
    status_dir.mkdir()
    status_dir.chmod(0o777)
    status, result, _ = _write(node_script, config, user.pw_uid, _document(user))
    assert (status, result["error"]["reason"]) == (3, "unsafe_status_dir")


def test_exempt_users_get_a_status_file_but_root_does_not(test_users, tmp_path, node_script):
    user = test_users[0]
    config = tmp_path / "exempt.json"
    config.write_text(json.dumps({"status_dir": str(tmp_path / "s"), "exempt_users": [user.pw_name]}))
    status, _, _ = _write(node_script, config, user.pw_uid, _document(user, tier="exempt"))
    assert status == 0
    root = type("Root", (), {"pw_name": "root", "pw_uid": 0})
    status, result, _ = _write(node_script, config, 0, _document(root))
    assert (status, result["error"]["reason"]) == (2, "protected_identity")


def _read_available(fd, timeout=2.0):
    data = b""
    while select.select([fd], [], [], timeout)[0]:
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        timeout = 0.2
    return data


def test_notify_reaches_only_the_users_own_terminal(test_users, node_script, spawn, tmp_path):
    user, other = test_users
    config = tmp_path / "node.json"
    config.write_text("{}")
    mine_master, mine_slave = pty.openpty()
    theirs_master, theirs_slave = pty.openpty()
    try:
        os.fchown(mine_slave, user.pw_uid, -1)
        os.fchown(theirs_slave, other.pw_uid, -1)
        spawn(user, ["sleep", "600"], stdin=mine_slave)
        spawn(other, ["sleep", "600"], stdin=theirs_slave)
        message = "Your GPU jobs will be stopped at 18:00 (balance below zero)."
        status, result, _ = run_node(
            node_script, ["--config", str(config), "notify", str(user.pw_uid)], stdin=message.encode() + b"\n"
        )
        assert status == 0 and result["written"] == [os.ttyname(mine_slave)]
        assert message.encode() in _read_available(mine_master)
        assert _read_available(theirs_master, 0.3) == b""
        for bad in (b"\x1b[2J clear", b"two\nlines", b"", "\u202e".encode(), b"x" * 1001):
            status, result, _ = run_node(
                node_script, ["--config", str(config), "notify", str(user.pw_uid)], stdin=bad
            )
            assert (status, result["error"]["reason"]) == (2, "bad_message")
        status, result, _ = run_node(node_script, ["--config", str(config), "notify", "0"], stdin=b"hello")
        assert (status, result["error"]["reason"]) == (2, "protected_identity")
    finally:
        for fd in (mine_master, mine_slave, theirs_master, theirs_slave):
            os.close(fd)
