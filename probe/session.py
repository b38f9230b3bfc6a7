"""``session-open``: the PAM session hook that puts a new login into the user's groups before its shell runs.

The node role installs ``session optional pam_exec.so quiet seteuid <prefix>/bin/gpuledger-node session-open``
in the PAM stacks of sshd and of ``common-session``/``common-session-noninteractive`` (su, runuser, sudo,
cron, at, systemd's user manager). pam_exec forks and execs this command while the PAM application (sshd's
privileged session process, su, cron's job child...) waits for it, before that application forks the user's
shell or job; so our parent is the process to place, and whatever it starts inherits the groups. This is
what Slurm's pam_slurm_adopt does for job cgroups. ``optional`` plus the node command's 2 s alarm keep the
hook fail-open: a failure or a hang never refuses or holds up a login, and the controller's next apply
moves whatever a missed hook left outside (``outside`` in ``quota-get``/``gpu-state``).
"""

import os
import pwd

from probe import backends, procfs
from probe.accounts import protection_reasons
from probe.errors import Refused
from probe.plan import execute
from probe.verbs import ok


def _parent_of_session():
    """The pid of the PAM application that ran pam_exec; refused if it is gone (we would be init's child)."""
    pid = os.getppid()
    if pid <= 1:
        raise Refused("no_session_process", "parent pid %d: the PAM application is gone" % pid)
    return pid


def pam_items(raw):
    """``PAM_TYPE`` and ``PAM_USER`` from a process environment block, the last of each name.

    pam_exec gives its child the PAM environment (``pam_getenvlist``, which pam_env may fill from a file the
    user writes) and then appends the PAM items, without removing a name already there. ``os.environ`` keeps
    the first of a repeated name, which would be the user's; the last one is the module's.
    """
    items = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name in (b"PAM_TYPE", b"PAM_USER"):
            items[name.decode("ascii")] = value.decode("utf-8", "surrogateescape")
    return items


def session_open(context, command):
    # The real hook reads its own environment block; a caller that injects an environment (tests) gives a dict.
    environ = context.environ
    if environ is os.environ:
        environ = pam_items(procfs.read_bytes("/proc/self/environ"))
    if environ.get("PAM_TYPE") != "open_session":
        raise Refused("not_a_pam_session", "PAM_TYPE is %s, not open_session" % ascii(environ.get("PAM_TYPE")))
    if os.geteuid() != 0:
        raise Refused("not_root", "pam_exec must run the hook with its seteuid option")
    # PAM_USER is the PAM application's authenticated target user (pam_exec puts the PAM items, not the
    # caller's environment, there), resolved like every PAM module resolves it; nothing a user types reaches it.
    name = environ.get("PAM_USER", "")
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        raise Refused("unknown_user", "PAM_USER %s has no account" % ascii(name)[:100]) from None
    pid = _parent_of_session()
    account = context.accounts.get(uid)
    # Metered exactly like the sample's process rows (uid_min and up, except nobody): exempt users are charged too.
    metered = account is not None and not protection_reasons(uid, account, context.policy, include_exemptions=False)
    backend = backends.detect(context.config)
    plan = backend.plan_session(uid, pid, metered, backend.observe_session(uid))
    actions = execute(plan)
    fields = {"uid": uid, "pid": pid, "backend": backend.name, "metered": metered}
    fields.update(actions=actions, reason="" if actions else plan.reason)
    return ok(command, **fields)
