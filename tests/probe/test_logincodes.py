"""``login-codes`` against real files in a real spool directory, owned by real test users (the tests run as root)."""

import json
import os
import re
import time

import pytest

from control import weblogin
from probe import logincodes
from probe.errors import Refused
from tests.probe.support import drop_box, is_root, run_node

pytestmark = pytest.mark.skipif(not is_root(), reason="needs root to own files as other uids")
CODE = "ABCD2345"


@pytest.fixture
def spool(tmp_path):
    return drop_box(tmp_path / "web-login")


def drop(spool, user, content=CODE + "\n", name=None, mode=0o600):
    """A code file as ``gpuledger-balance --web`` leaves it: the user's, 0600 unless said otherwise."""
    path = spool / (name or f"code-{os.urandom(4).hex()}")
    path.write_text(content)
    os.chown(path, user.pw_uid, user.pw_gid)
    os.chmod(path, mode)
    return path


def test_a_code_comes_back_with_its_owner_and_is_removed(spool, test_users, uid_min):
    a, b = test_users
    drop(spool, a)
    drop(spool, b, "EFGH6789")
    entries, more = logincodes.collect(str(spool), uid_min)
    assert not more
    assert sorted((e["user"], e["uid"], e["code"]) for e in entries) == sorted(
        [(a.pw_name, a.pw_uid, CODE), (b.pw_name, b.pw_uid, "EFGH6789")])
    assert all(abs(e["written_at"] - time.time()) < 120 for e in entries)
    assert list(spool.iterdir()) == []
    assert logincodes.collect(str(spool), uid_min) == ([], False)


def test_user_b_writing_a_code_is_named_b_whatever_the_file_says(spool, test_users, uid_min):
    a, b = test_users
    drop(spool, b, CODE + "\n", name=a.pw_name)  # the name and content are b's to choose; the owner is not
    [entry] = logincodes.collect(str(spool), uid_min)[0]
    assert (entry["user"], entry["uid"]) == (b.pw_name, b.pw_uid)


@pytest.mark.parametrize(("make", "reason"), [
    (lambda spool, user, other: os.symlink(drop(spool.parent, user), spool / "link"), "symlink"),
    (lambda spool, user, other: os.link(drop(spool, user, name="orig"), spool / "second"), "hard_link"),
    (lambda spool, user, other: drop(spool, user, mode=0o620), "writable_by_others"),
    (lambda spool, user, other: drop(spool, user, mode=0o602), "writable_by_others"),
    (lambda spool, user, other: drop(spool, user, CODE + "\n" + "x" * 64), "oversize"),
    (lambda spool, user, other: drop(spool, user, "not-a-code"), "bad_code"),
    (lambda spool, user, other: drop(spool, user, CODE.lower()), "bad_code"),
    (lambda spool, user, other: os.chown(drop(spool, user), 0, 0), "system_user"),
    (lambda spool, user, other: os.chown(drop(spool, user), 1, 1), "system_user"),
    (lambda spool, user, other: os.chown(drop(spool, user), 65534, 65534), "system_user"),
    (lambda spool, user, other: os.mkfifo(spool / "fifo"), "not_regular_file"),
    (lambda spool, user, other: (spool / "dir").mkdir(), "not_regular_file"),
])
def test_each_unsafe_entry_is_refused_and_removed(spool, test_users, uid_min, make, reason):
    make(spool, *test_users)
    entries = logincodes.collect(str(spool), uid_min)[0]
    assert reason in {e.get("refused") for e in entries}
    assert not any("code" in e for e in entries)
    assert list(spool.iterdir()) == []


def test_a_hard_link_refuses_both_names_and_the_symlink_target_survives(spool, test_users, uid_min, tmp_path):
    a, _ = test_users
    outside = tmp_path / "outside"
    outside.write_text(CODE)
    os.chown(outside, a.pw_uid, a.pw_gid)
    os.symlink(outside, spool / "link")
    os.link(drop(spool, a, name="one"), spool / "two")
    entries = logincodes.collect(str(spool), uid_min)[0]
    assert sorted(e["refused"] for e in entries) == ["hard_link", "hard_link", "symlink"]
    assert outside.read_text() == CODE


def test_an_expired_code_is_refused(spool, test_users, uid_min):
    drop(spool, test_users[0])
    [entry] = logincodes.collect(str(spool), uid_min, now=time.time() + logincodes.MAX_AGE_S + 5)[0]
    assert entry == {"refused": "expired", "uid": test_users[0].pw_uid}


def test_a_file_swapped_for_a_symlink_after_its_lstat_is_not_followed(spool, test_users, uid_min, tmp_path,
                                                                     monkeypatch):
    a, b = test_users
    victim = tmp_path / "b-owned"
    victim.write_text(CODE)
    os.chown(victim, b.pw_uid, b.pw_gid)
    path = drop(spool, a, "EFGH6789", name="race")
    real_stat = os.stat

    def stat_then_swap(name, *args, **kwargs):
        result = real_stat(name, *args, **kwargs)
        if name == "race":  # the owner replaces their file between our lstat and our open
            path.unlink()
            os.symlink(victim, path)
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    entries = logincodes.collect(str(spool), uid_min)[0]
    monkeypatch.undo()
    assert entries == [{"refused": "symlink"}]
    assert victim.read_text() == CODE and list(spool.iterdir()) == []


@pytest.mark.parametrize(("mode", "owner", "problem"), [
    (0o1777, 0, "mode 1777"),
    (0o0733, 0, "mode 0733"),
    (0o1733, 1, "owned by uid 1"),
])
def test_an_untrusted_spool_refuses_everything_and_touches_nothing(spool, test_users, uid_min, mode, owner, problem):
    path = drop(spool, test_users[0])
    os.chown(spool, owner, 0)
    os.chmod(spool, mode)
    with pytest.raises(Refused) as raised:
        logincodes.collect(str(spool), uid_min)
    assert raised.value.reason == "unsafe_spool" and problem in raised.value.detail
    assert path.exists()


def test_a_symlinked_spool_is_refused_and_a_missing_one_is_absent(spool, tmp_path, uid_min):
    os.symlink(spool, tmp_path / "alias")
    (tmp_path / "file").write_text("")
    for path, problem in ((tmp_path / "alias", "is a symlink"), (tmp_path / "file", "is not a directory")):
        with pytest.raises(Refused) as raised:
            logincodes.collect(str(path), uid_min)
        assert raised.value.detail == f"{path} {problem}"
    assert logincodes.collect(str(tmp_path / "none"), uid_min) == (None, False)


def test_many_entries_are_read_in_bounded_batches(spool, test_users, uid_min):
    for index in range(logincodes.MAX_ENTRIES + 3):
        drop(spool, test_users[0], name=f"n{index:04d}")
    entries, more = logincodes.collect(str(spool), uid_min)
    assert (len(entries), more) == (logincodes.MAX_ENTRIES, True)
    assert logincodes.collect(str(spool), uid_min)[0].__len__() == 3


def test_the_verb_over_the_node_command(node_script, spool, test_users, write_config, uid_min):
    drop(spool, test_users[0])
    config = write_config(web_login_dir=str(spool), uid_min=uid_min)
    status, result, _ = run_node(node_script, ["--config", str(config), "login-codes"])
    assert status == 0, result
    assert (result["verb"], result["present"], result["more"]) == ("login-codes", True, False)
    assert [(e["user"], e["code"]) for e in result["entries"]] == [(test_users[0].pw_name, CODE)]
    os.chmod(spool, 0o1777)
    status, result, _ = run_node(node_script, ["--config", str(config), "login-codes"])
    assert (status, result["error"]["reason"]) == (2, "unsafe_spool")
    assert "login-codes" in json.dumps(run_node(node_script, ["version"])[1]["verbs"])


def test_the_probe_and_the_controller_agree_on_the_code_shape():
    # probe imports nothing of ours, so the shape is written twice; this keeps the two the same.
    accepted = {chr(c) for c in range(128) if logincodes.CODE_SHAPE.match(chr(c).encode() * 8)}
    assert accepted == set(weblogin.ALPHABET) and len(weblogin.ALPHABET) == 32
    assert re.fullmatch(r"[A-Z2-9]{8}", weblogin.normalize("abcd-2345"))
