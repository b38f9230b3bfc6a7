"""Who a uid is, and whether the node must refuse to act on it.

Name lookups dominate a process scan when done per process, so ``Accounts`` reads /etc/passwd once and
asks ``pwd`` (NSS: LDAP, sssd) only for uids that file does not list.
"""

import collections
import grp
import os
import pwd

from probe.constants import NOBODY_UID

DEFAULT_UID_MIN = 1000

Account = collections.namedtuple("Account", "uid name gid")
Policy = collections.namedtuple("Policy", "uid_min exempt_users exempt_groups")
Policy.__doc__ = "Protected identities: uids below uid_min, exempt user names, members of exempt groups."


def parse_passwd(text):
    """``{uid: Account}`` from passwd(5) text; malformed lines are skipped, the first entry for a uid wins."""
    accounts = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            uid = int(parts[2])
            accounts.setdefault(uid, Account(uid, parts[0], int(parts[3])))
    return accounts


def parse_login_defs_uid_min(text):
    """``UID_MIN`` from login.defs(5) text, or None when it is absent or malformed."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "UID_MIN" and parts[1].isdigit():
            return int(parts[1])
    return None


def resolve_uid_min(configured, login_defs_path="/etc/login.defs"):
    if configured is not None:
        return configured
    try:
        with open(login_defs_path, encoding="utf-8", errors="replace") as handle:
            found = parse_login_defs_uid_min(handle.read())
    except OSError:
        found = None
    return DEFAULT_UID_MIN if found is None else found


class Accounts:
    """uid -> Account, cached for the life of one command."""

    def __init__(self, passwd_path="/etc/passwd"):
        try:
            with open(passwd_path, encoding="utf-8", errors="replace") as handle:
                self._by_uid = parse_passwd(handle.read())
        except OSError:
            self._by_uid = {}
        self._missing = set()

    def get(self, uid):
        """The Account for ``uid``, or None if no account source knows it."""
        account = self._by_uid.get(uid)
        if account is None and uid not in self._missing:
            try:
                entry = pwd.getpwuid(uid)
            except KeyError:
                self._missing.add(uid)
                return None
            account = self._by_uid[uid] = Account(uid, entry.pw_name, entry.pw_gid)
        return account

    def name(self, uid):
        account = self.get(uid)
        return None if account is None else account.name


def group_ids(account):
    """Every gid ``account`` belongs to (primary and supplementary)."""
    try:
        return set(os.getgrouplist(account.name, account.gid))
    except OSError:
        return {account.gid}


def _exempt_gids(names):
    gids = set()
    for name in names:
        try:
            gids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            continue
    return gids


def protection_reasons(uid, account, policy, include_exemptions=True):
    """Why the node must not act on ``uid`` (empty list: it may). ``account`` is None for unknown uids."""
    reasons = []
    if uid == 0:
        reasons.append("root")
    elif uid < policy.uid_min:
        reasons.append("below_uid_min")
    if uid == NOBODY_UID:
        reasons.append("nobody")
    if include_exemptions and account is not None:
        if account.name in policy.exempt_users:
            reasons.append("exempt_user")
        if policy.exempt_groups and group_ids(account) & _exempt_gids(policy.exempt_groups):
            reasons.append("exempt_group")
    return reasons
