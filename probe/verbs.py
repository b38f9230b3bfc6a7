"""The read-only verbs (``version``, ``sample``) and what every handler shares.

Each handler takes ``(context, command)`` and returns ``(result, exit_status)``. The enforcement
handlers live in ``probe.enforce`` so that ``sample``, which runs on every node every minute, never
imports them.
"""

import collections
import sys

from probe import sample as sampler
from probe.accounts import protection_reasons
from probe.command import VERBS
from probe.constants import EXIT_OK, PROBE_VERSION, SCHEMA_VERSION
from probe.errors import Refused

Context = collections.namedtuple("Context", "config accounts policy read_stdin nvml_loader environ")
Context.__doc__ = "Everything a handler may use: config, accounts, protection policy, stdin, NVML loader, environ."


def account_of(context, uid, mutating, include_exemptions=True):
    account = context.accounts.get(uid)
    if account is None:
        raise Refused("unknown_user", "uid %d has no account on this node" % uid)
    if mutating:
        reasons = protection_reasons(uid, account, context.policy, include_exemptions)
        if reasons:
            raise Refused("protected_identity", "uid %d (%s): %s" % (uid, account.name, ", ".join(reasons)))
    return account


def ok(command, **fields):
    result = {"ok": True, "verb": command.verb}
    if command.uid is not None:
        result["uid"] = command.uid
    result.update(fields)
    return result, EXIT_OK


def version(context, command):
    return ok(
        command,
        probe_version=PROBE_VERSION,
        schema_version=SCHEMA_VERSION,
        python="%d.%d.%d" % sys.version_info[:3],
        verbs=list(VERBS),
    )


def sample(context, command):
    return sampler.build(context.config, context.nvml_loader, context.accounts), EXIT_OK
