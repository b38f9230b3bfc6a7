"""Account lookups, UID_MIN, and the protected-identity rule as a property."""

import grp
import pwd

from hypothesis import given, settings
from hypothesis import strategies as st

from probe.accounts import Account, Accounts, Policy, parse_login_defs_uid_min, protection_reasons, resolve_uid_min


def test_passwd_is_read_once_and_nss_fills_the_gaps(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("alice:x:1001:1001::/home/alice:/bin/bash\nbroken line\nbob:x:notanumber:1:::\n")
    accounts = Accounts(str(passwd))
    passwd.unlink()  # later lookups must not read it again
    assert accounts.name(1001) == "alice"
    assert accounts.name(0) == pwd.getpwuid(0).pw_name  # not in the file: asked through NSS
    assert accounts.get(2999997) is None


def test_uid_min_comes_from_config_then_login_defs_then_1000(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nSYS_UID_MIN 100\nUID_MIN\t\t\t 2000\n")
    assert parse_login_defs_uid_min(defs.read_text()) == 2000
    assert resolve_uid_min(500, str(defs)) == 500
    assert resolve_uid_min(None, str(defs)) == 2000
    assert resolve_uid_min(None, str(tmp_path / "missing")) == 1000


@settings(max_examples=2000, deadline=None)
@given(
    uid=st.one_of(st.integers(0, 1100), st.integers(60000, 70000), st.integers(0, 2**32 - 2)),
    uid_min=st.integers(1, 1100),
    name=st.sampled_from(["alice", "svc", "admin1", "glp-nobody-here"]),
    exempt=st.lists(st.sampled_from(["admin1", "svc", "carol"]), max_size=2),
)
def test_protected_identities_property(uid, uid_min, name, exempt):
    policy = Policy(uid_min, tuple(exempt), ())
    reasons = protection_reasons(uid, Account(uid, name, 2999996), policy)
    protected = uid == 0 or uid < uid_min or uid == 65534 or name in exempt
    assert bool(reasons) == protected
    assert ("root" in reasons) == (uid == 0)


def test_exempt_groups_cover_primary_and_supplementary_groups():
    root = pwd.getpwuid(0)
    group = grp.getgrgid(root.pw_gid).gr_name
    policy = Policy(1000, (), (group,))
    assert protection_reasons(5000, Account(5000, root.pw_name, root.pw_gid), policy) == ["exempt_group"]
