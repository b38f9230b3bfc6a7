"""``gpu-requests`` against real files in a real drop box owned by real test users, and over real SSH."""

import json
import os
import re
import stat
import subprocess
import time

import pytest

from probe import dropbox, gpurequests, holding
from probe.errors import Failed
from tests.harness.sshd import SshdNode, ensure_user, generate_key, remove_user, sshd_available
from tests.probe.support import PY38, drop_box, install_node, is_root, run_node

pytestmark = pytest.mark.skipif(not is_root(), reason="needs root to own files as other uids")
NONCE = "n0nce_" + "a" * 16
REQUEST = {"op": "request", "nonce": NONCE, "models": ["rtx3090"], "count": 2, "hours": "4", "node": None,
           "run": False}


@pytest.fixture
def box(tmp_path):
    return drop_box(tmp_path / "gpu-requests")


@pytest.fixture
def hold(tmp_path):
    return tmp_path / "gpu-requests.held"


@pytest.fixture
def config(box, hold, write_config, uid_min):
    return write_config(gpu_request_dir=str(box), gpu_request_hold_dir=str(hold), uid_min=uid_min)


def drop(box, user, body=REQUEST, name=None, mode=0o644):
    """A request file as ``gpu-request`` leaves it: the user's own, 0644 unless said otherwise."""
    path = box / (name or f"req-{os.urandom(4).hex()}")
    path.write_bytes(body if isinstance(body, bytes) else json.dumps(body).encode())
    os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(path, mode)
    return path


def read(node_script, config):
    status, result, stderr = run_node(node_script, ["--config", str(config), "gpu-requests"])
    assert status == 0, (result, stderr)
    return result


def test_two_users_racing_are_both_read_each_as_the_files_owner(node_script, config, box, test_users):
    a, b = test_users
    drop(box, a, name=b.pw_name)  # the name is a's to choose; the identity is not
    drop(box, b, {**REQUEST, "models": [], "count": 1, "hours": None, "node": "n1", "run": True})
    result = read(node_script, config)
    assert (result["verb"], result["present"], result["more"], result["refused"]) == ("gpu-requests", True, False, [])
    by_user = {entry["user"]: entry for entry in result["requests"]}
    assert set(by_user) == {a.pw_name, b.pw_name}
    assert (by_user[a.pw_name]["uid"], by_user[a.pw_name]["request"]) == (a.pw_uid, REQUEST)
    assert by_user[b.pw_name]["request"]["node"] == "n1" and by_user[b.pw_name]["request"]["run"] is True
    assert all(abs(entry["ctime"] - time.time()) < 120 for entry in result["requests"])
    assert list(box.iterdir()) == []
    assert read(node_script, config)["requests"] == result["requests"]  # held until acknowledged


def ack(node_script, config, handles):
    return run_node(node_script, ["--config", str(config), "gpu-requests-done"],
                    stdin=json.dumps({"handles": handles}).encode())


def test_held_entries_are_served_again_until_acknowledged_then_never(node_script, config, box, hold, test_users):
    a, b = test_users
    drop(box, a)
    [first] = read(node_script, config)["requests"]
    assert re.fullmatch(r"[0-9]{10}-[0-9a-f]{16}", first["handle"]) and list(box.iterdir()) == []
    [held] = hold.iterdir()
    assert (held.name, held.stat().st_uid, stat.S_IMODE(held.stat().st_mode)) == (first["handle"], 0, 0o600)
    assert (hold.stat().st_uid, stat.S_IMODE(hold.stat().st_mode)) == (0, 0o700)  # made by the first call
    drop(box, b, {"op": "cancel", "nonce": "x" * 16, "id": 3})
    again = read(node_script, config)["requests"]
    assert first in again and {e["user"] for e in again} == {a.pw_name, b.pw_name}
    assert again == sorted(again, key=lambda e: e["handle"])  # filing order, to the second
    [second] = [e for e in again if e != first]
    status, done, _ = ack(node_script, config, [first["handle"]])
    assert (status, done["removed"], done["unknown"]) == (0, 1, 0)
    assert read(node_script, config)["requests"] == [second]
    status, done, _ = ack(node_script, config, [first["handle"], second["handle"]])
    assert (status, done["removed"], done["unknown"]) == (0, 1, 1)  # acknowledged twice: harmless
    status, done, _ = ack(node_script, config, ["1234567890-0123456789abcdef"])
    assert (status, done["removed"], done["unknown"]) == (0, 0, 1)
    assert read(node_script, config)["requests"] == [] and list(hold.iterdir()) == []


@pytest.mark.skipif(not PY38.exists(), reason="no Python 3.8 interpreter here")
def test_the_hand_over_runs_on_python_3_8(tmp_path, config, box, hold, test_users):
    script = install_node(tmp_path / "py38", PY38)
    drop(box, test_users[0])
    [held] = read(script, config)["requests"]
    assert read(script, config)["requests"] == [held]
    status, done, stderr = ack(script, config, [held["handle"]])
    assert (status, done["removed"]) == (0, 1), stderr
    assert read(script, config)["requests"] == []


def _foreign(hold, user):
    hold.mkdir(mode=0o700)
    os.chown(hold, user.pw_uid, user.pw_gid)


def _linked(hold, user):
    target = hold.with_name("elsewhere")
    target.mkdir(mode=0o700)
    os.symlink(target, hold)


@pytest.mark.parametrize(("make", "why"), [
    (_linked, "is a symlink"),
    (_foreign, "not root"),
    (lambda hold, user: hold.mkdir(mode=0o755), "has mode 0755"),
    (lambda hold, user: hold.write_text("x"), "is not a directory"),
], ids=["symlink", "foreign-owned", "wrong-mode", "a-file"])
def test_an_unsafe_holding_place_is_refused_and_the_box_keeps_its_files(node_script, config, box, hold, test_users,
                                                                       make, why):
    make(hold, test_users[0])
    filed = drop(box, test_users[0])
    for words, stdin in ((["gpu-requests"], b""), (["gpu-requests-done"], b'{"handles": []}')):
        status, result, stderr = run_node(node_script, ["--config", str(config), *words], stdin=stdin)
        assert (status, result["error"]["reason"]) == (2, "unsafe_hold"), (result, stderr)
        assert why in result["error"]["detail"]
    assert filed.exists()  # nothing handed over, nothing removed


@pytest.mark.parametrize("stdin", [
    b"", b"[]", b'{"handles": "1234567890-0123456789abcdef"}', b'{"handles": [], "more": 1}',
    b'{"handles": ["../../etc/passwd"]}', b'{"handles": ["1234567890-0123456789ABCDEF"]}',
    b'{"handles": [1.5]}', b'{"handles": ["1234567890-0123456789abcdef", "1234567890-0123456789abcdef"]}',
    json.dumps({"handles": [f"{i:010d}-0123456789abcdef" for i in range(gpurequests.MAX_ENTRIES + 1)]}).encode(),
    b" " * (gpurequests.MAX_ACK_BYTES + 1),
], ids=["empty", "list", "string", "extra-key", "path", "upper-case", "float", "repeated", "too-many", "too-long"])
def test_an_acknowledgement_is_exactly_a_list_of_handles(node_script, config, box, test_users, stdin):
    drop(box, test_users[0])
    [held] = read(node_script, config)["requests"]
    status, result, _ = run_node(node_script, ["--config", str(config), "gpu-requests-done"], stdin=stdin)
    assert (status, result["error"]["reason"]) == (2, "bad_document")
    assert read(node_script, config)["requests"] == [held]  # still held


def _place(hold):
    return holding.Place(str(hold), gpurequests.problem_of)


def test_a_held_entry_past_the_bound_is_reported_and_dropped(box, hold, test_users):
    drop(box, test_users[0])
    with _place(hold) as place:
        [entry], more = dropbox.collect(gpurequests.BOX, str(box), 1, keep=place.hold)
        later = entry.ctime + holding.MAX_HELD_AGE_S + 1
        assert place.served(later - 2, 10) == ([entry], [], False)
        held, dropped, more = place.served(later, 10)
    assert (held, more) == ([], False)
    assert [(d.reason, d.uid) for d in dropped] == [("held_expired", test_users[0].pw_uid)]
    assert list(hold.iterdir()) == []


def test_a_corrupt_held_file_or_a_crashed_write_is_dropped(box, hold, test_users):
    drop(box, test_users[0])
    with _place(hold) as place:
        [entry], _ = dropbox.collect(gpurequests.BOX, str(box), 1, keep=place.hold)
    (hold / f"{entry.ctime:010d}-{'f' * 16}").write_text('{"uid": 1001}')
    (hold / f"{entry.ctime - 1:010d}-{'e' * 16}").write_text(json.dumps(
        {"uid": entry.uid, "user": entry.user, "ctime": entry.ctime, "request": REQUEST}))  # ctime is not its name's
    (hold / ".1234567890-0123456789abcdef.tmp").write_text("half")
    with _place(hold) as place:
        held, dropped, _ = place.served(time.time(), 10)
    assert held == [entry]
    assert sorted(d.reason for d in dropped) == ["held_corrupt", "held_corrupt"]
    assert [p.name for p in hold.iterdir()] == [entry.handle]


def test_held_entries_take_their_room_first_and_the_box_waits(box, hold, test_users):
    for index in range(3):
        drop(box, test_users[0], name=f"n{index}")
    with _place(hold) as place:
        small = gpurequests.BOX._replace(max_entries=2)
        assert len(dropbox.collect(small, str(box), 1, keep=place.hold)[0]) == 2
        held, dropped, more = place.served(time.time(), 1)
        assert (len(held), dropped, more) == (1, [], True)
    assert len(list(box.iterdir())) == 1


def test_a_failure_to_hold_removes_nothing_from_the_box(box, hold, test_users):
    filed = drop(box, test_users[0])

    def broken(entries):
        raise Failed("hold_unusable", "disk full")

    with pytest.raises(Failed):
        dropbox.collect(gpurequests.BOX, str(box), 1, keep=broken)
    assert filed.exists()


@pytest.mark.parametrize("body", [
    {"op": "cancel", "nonce": NONCE, "id": 12},
    {"op": "release", "nonce": NONCE, "id": None},
    {"op": "release", "nonce": NONCE, "id": 3},
    {"op": "claim", "nonce": NONCE, "id": 7},
    {**REQUEST, "hours": "0.5", "count": 64, "models": ["a100-80gb", "h100"]},
    {**REQUEST, "hours": "168"},
])
def test_every_op_passes_as_written(node_script, config, box, test_users, body):
    drop(box, test_users[0], body)
    [entry] = read(node_script, config)["requests"]
    assert entry["request"] == body


def _symlink(box, user, other):
    target = drop(box.parent, other)
    os.symlink(target, box / "link")
    os.lchown(box / "link", user.pw_uid, user.pw_gid)


@pytest.mark.parametrize(("make", "reason", "owner"), [
    (_symlink, "symlink", 0),
    (lambda box, user, other: os.link(drop(box, user, name="orig"), box / "second"), "hard_link", 0),
    (lambda box, user, other: os.mkfifo(box / "fifo"), "not_regular_file", None),
    (lambda box, user, other: os.chown(drop(box, user), 0, 0), "system_user", None),
    (lambda box, user, other: os.chown(drop(box, user), 1, 1), "system_user", None),
    (lambda box, user, other: os.chown(drop(box, user), 65534, 65534), "system_user", None),
    (lambda box, user, other: drop(box, user, mode=0o664), "writable_by_others", 0),
    (lambda box, user, other: drop(box, user, mode=0o646), "writable_by_others", 0),
    (lambda box, user, other: drop(box, user, {**REQUEST, "node": "x" * 5000}), "oversize", 0),
    (lambda box, user, other: drop(box, user, b"{not json"), "malformed", 0),
    (lambda box, user, other: drop(box, user, b"\xff\xfe"), "malformed", 0),
    (lambda box, user, other: drop(box, user, b"[1, 2]"), "malformed", 0),
], ids=["symlink", "hard-link", "fifo", "root", "system", "nobody", "group-writable", "other-writable", "oversize",
        "json", "utf8", "not-object"])
def test_each_unsafe_file_is_refused_reported_and_removed(node_script, config, box, test_users, make, reason, owner):
    make(box, *test_users)
    result = read(node_script, config)
    assert result["requests"] == []
    assert reason in {entry["reason"] for entry in result["refused"]}, result
    if owner is not None:
        assert {entry["uid"] for entry in result["refused"]} == {test_users[owner].pw_uid}
    assert list(box.iterdir()) == []


@pytest.mark.parametrize(("change", "why"), [
    ({"count": 0}, "count must be"), ({"count": 65}, "count must be"), ({"count": True}, "count must be"),
    ({"count": "2"}, "count must be"), ({"hours": 4}, "hours must be"), ({"hours": "0"}, "more than 0"),
    ({"hours": "168.5"}, "at most 168"), ({"hours": "1e3"}, "hours must be"), ({"models": "rtx3090"}, "models must"),
    ({"models": ["rtx 3090"]}, "each model"), ({"models": [3]}, "each model"), ({"node": ""}, "node must"),
    ({"node": "../etc"}, "node must"), ({"run": 1}, "run must"), ({"nonce": "short"}, "nonce must"),
    ({"nonce": "x" * 16 + ";"}, "nonce must"), ({"op": "grab"}, "op must"), ({"extra": 1}, "unknown: extra"),
    ({"hours": 4.5}, "fraction"),
])
def test_a_request_of_the_wrong_shape_is_refused_with_what_is_wrong(node_script, config, box, test_users, change,
                                                                    why):
    body = {**REQUEST, **change}
    drop(box, test_users[1], json.dumps(body).encode())
    [refused] = read(node_script, config)["refused"]
    assert (refused["uid"], refused["reason"]) == (test_users[1].pw_uid, "malformed")
    assert why in refused["detail"], refused


@pytest.mark.parametrize("body", [
    {"op": "cancel", "nonce": NONCE}, {"op": "cancel", "nonce": NONCE, "id": None},
    {"op": "claim", "nonce": NONCE, "id": 0}, {"op": "release", "nonce": NONCE, "id": "3"},
    {"op": "request", "nonce": NONCE, "count": 1},
])
def test_ids_and_keys_are_exact_per_op(body):
    reason, detail, value = gpurequests.parse_request(json.dumps(body).encode())
    assert (reason, value) == ("malformed", None) and detail


def test_a_stale_request_is_refused(box, test_users):
    drop(box, test_users[0])
    entries, _ = gpurequests.dropbox.collect(gpurequests.BOX, str(box), 1, now=time.time() + gpurequests.MAX_AGE_S + 5)
    assert [(entry.reason, entry.uid) for entry in entries] == [("expired", test_users[0].pw_uid)]


def test_output_is_bounded_and_the_rest_waits(box, test_users):
    for index in range(gpurequests.MAX_ENTRIES + 2):
        drop(box, test_users[0], name=f"n{index:04d}")
    entries, more = gpurequests.dropbox.collect(gpurequests.BOX, str(box), 1)
    assert (len(entries), more) == (gpurequests.MAX_ENTRIES, True)
    assert len(gpurequests.dropbox.collect(gpurequests.BOX, str(box), 1)[0]) == 2


def test_an_untrusted_or_missing_box(node_script, config, box, hold, tmp_path, write_config):
    os.chmod(box, 0o1777)
    status, result, _ = run_node(node_script, ["--config", str(config), "gpu-requests"])
    assert (status, result["error"]["reason"]) == (2, "unsafe_spool")
    missing = write_config(gpu_request_dir=str(tmp_path / "none"), gpu_request_hold_dir=str(tmp_path / "none.held"))
    result = read(node_script, missing)
    assert (result["present"], result["requests"], result["refused"]) == (False, [], [])
    assert not (tmp_path / "none.held").exists()  # nothing to hold where nothing was ever filed


@pytest.mark.skipif(not sshd_available(), reason="needs root and openssh-server")
def test_requests_from_real_users_over_real_ssh(node_script, tmp_path):
    """Two users log in over SSH and drop a request each (as the hook does); the owners are the SSH logins."""
    box = f"/run/gpuledger-test-requests-{os.getpid()}"
    os.makedirs(box)
    os.chmod(box, 0o1733)
    names = [f"glq-{os.urandom(2).hex()}-{side}" for side in "ab"]
    key = generate_key(tmp_path / "id_ed25519")
    try:
        users = [ensure_user(name) for name in names]
        with SshdNode(tmp_path / "sshd", {name: [key.with_suffix(".pub").read_text()] for name in names}) as node:
            known = tmp_path / "known_hosts"
            known.write_text(node.known_hosts_line() + "\n")
            for name in names:
                script = (f"import json,os;fd=os.open('{box}/r-'+os.urandom(8).hex(),os.O_WRONLY|os.O_CREAT|os.O_EXCL,"
                          f"0o600);os.write(fd,json.dumps({REQUEST!r}).encode());os.fchmod(fd,0o644)")
                done = subprocess.run(
                    ["ssh", "-i", str(key), "-p", str(node.port), "-o", "UserKnownHostsFile=" + str(known),
                     "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", name + "@127.0.0.1",
                     "python3 -c " + json.dumps(script)],
                    capture_output=True, timeout=60)
                assert done.returncode == 0, (done.stderr, node.log()[-2000:])
        config = tmp_path / "node.json"
        config.write_text(json.dumps({"gpu_request_dir": box, "gpu_request_hold_dir": str(tmp_path / "held")}))
        result = read(node_script, config)
        assert sorted((e["user"], e["uid"]) for e in result["requests"]) == sorted(
            (user.pw_name, user.pw_uid) for user in users)
        assert result["refused"] == []
    finally:
        for name in names:
            remove_user(name)
        for entry in os.listdir(box):
            os.unlink(os.path.join(box, entry))
        os.rmdir(box)
