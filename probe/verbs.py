"""What each verb does, given a validated ``Command``: every handler returns ``(result, exit_status)``."""

import collections
import platform

from probe import backends, kill, notify, procfs, status
from probe import sample as sampler
from probe.accounts import protection_reasons
from probe.command import VERBS
from probe.constants import EXIT_FAILED, EXIT_OK, PROBE_VERSION, SCHEMA_VERSION
from probe.errors import Refused
from probe.plan import execute

Context = collections.namedtuple("Context", "config accounts policy read_stdin nvml_loader")
Context.__doc__ = "Everything a handler may use: config, account cache, protection policy, stdin, NVML loader."


def _account(context, uid, mutating, include_exemptions=True):
    account = context.accounts.get(uid)
    if account is None:
        raise Refused("unknown_user", "uid %d has no account on this node" % uid)
    if mutating:
        reasons = protection_reasons(uid, account, context.policy, include_exemptions)
        if reasons:
            raise Refused("protected_identity", "uid %d (%s): %s" % (uid, account.name, ", ".join(reasons)))
    return account


def _ok(command, **fields):
    result = {"ok": True, "verb": command.verb}
    if command.uid is not None:
        result["uid"] = command.uid
    result.update(fields)
    return result, EXIT_OK


def version(context, command):
    return _ok(
        command,
        probe_version=PROBE_VERSION,
        schema_version=SCHEMA_VERSION,
        python=platform.python_version(),
        verbs=list(VERBS),
    )


def sample(context, command):
    return sampler.build(context.config, context.nvml_loader, context.accounts), EXIT_OK


def _quota_view(observed):
    return {"quota_ppm": observed.quota_ppm, "raw": observed.raw}


def _gpu_view(observed):
    return {"blocked": observed.blocked, "majors": list(observed.majors)}


def _enforce(context, command, observe, plan_for, view):
    backend = backends.detect(context.config)
    before = observe(backend)
    plan = plan_for(backend, before)
    actions = execute(plan)
    after = observe(backend)
    fields = {"backend": backend.name, "changed": bool(actions), "before": view(before), "after": view(after)}
    fields.update(actions=actions, reason=plan.reason if not actions else "")
    if hasattr(backend, "cpus"):
        fields["cpus"] = backend.cpus
    return _ok(command, **fields)


def quota_get(context, command):
    _account(context, command.uid, mutating=False)
    backend = backends.detect(context.config)
    return _ok(command, backend=backend.name, cpus=backend.cpus, **_quota_view(backend.observe_quota(command.uid)))


def quota_set(context, command):
    """``quota-set`` and ``quota-clear`` (whose ``ppm`` is None)."""
    uid = command.uid
    _account(context, uid, mutating=True)
    return _enforce(
        context,
        command,
        lambda backend: backend.observe_quota(uid),
        lambda backend, observed: backend.plan_quota(uid, command.ppm, observed),
        _quota_view,
    )


def gpu_state(context, command):
    _account(context, command.uid, mutating=False)
    backend = backends.detect(context.config)
    return _ok(command, backend=backend.name, **_gpu_view(backend.observe_gpu(command.uid)))


def _gpu(context, command, blocked):
    uid = command.uid
    _account(context, uid, mutating=True)
    return _enforce(
        context,
        command,
        lambda backend: backend.observe_gpu(uid),
        lambda backend, observed: backend.plan_gpu(uid, blocked, observed),
        _gpu_view,
    )


def kill_process(context, command):
    _account(context, command.uid, mutating=True)
    proc_root = context.config.proc_root
    boot_id = procfs.read_text(proc_root + "/sys/kernel/random/boot_id").strip()
    target = kill.Target(command.boot_id, command.pid, command.start_ticks, command.uid)
    result = kill.kill(target, boot_id, proc_root, context.config.kill_grace_seconds)
    fields = {"pid": command.pid, "outcome": result.outcome, "signals": result.signals}
    fields.update(waited_ms=result.waited_ms, detail=result.detail)
    if result.outcome != "unkillable":
        return _ok(command, **fields)
    failed = {"ok": False, "verb": command.verb, "uid": command.uid}
    failed.update(fields, error={"kind": "failed", "reason": "unkillable", "detail": result.detail})
    return failed, EXIT_FAILED


def status_write(context, command):
    account = _account(context, command.uid, mutating=True, include_exemptions=False)
    document = status.decode(context.read_stdin(status.MAX_DOCUMENT_BYTES + 1))
    found = status.problems(document, command.uid, account.name)
    if found:
        raise Refused("bad_document", "; ".join(found))
    path = "%s/%d.status" % (context.config.status_dir, command.uid)
    changed = status.write(context.config.status_dir, command.uid, status.render(document))
    return _ok(command, path=path, changed=changed)


def notify_user(context, command):
    account = _account(context, command.uid, mutating=True)
    message = notify.message_from(context.read_stdin(notify.MAX_MESSAGE_BYTES + 1))
    lines = notify.terminal_lines(account.name, command.uid, context.config.proc_root)
    written, skipped = notify.write_to_terminals(lines, command.uid, message)
    return _ok(command, written=written, skipped=skipped)


HANDLERS = {
    "version": version,
    "sample": sample,
    "quota-get": quota_get,
    "quota-set": quota_set,
    "quota-clear": quota_set,
    "gpu-state": gpu_state,
    "gpu-block": lambda context, command: _gpu(context, command, True),
    "gpu-unblock": lambda context, command: _gpu(context, command, False),
    "kill": kill_process,
    "status-write": status_write,
    "notify": notify_user,
}
