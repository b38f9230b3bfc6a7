"""The enforcement verbs: quotas, GPU blocks, kills, status files and notices."""

from probe import atomicfile, backends, gpumask, kill, notify, procfs, queuestatus, status
from probe.constants import EXIT_FAILED
from probe.errors import Refused
from probe.plan import execute
from probe.verbs import account_of, ok


def _quota_view(observed):
    return {"quota_ppm": observed.quota_ppm, "raw": observed.raw, "outside": observed.outside}


def _gpu_view(observed):
    view = {"blocked": observed.blocked, "denied_minors": gpumask.view(observed.denied_minors)}
    view.update(majors=list(observed.majors), outside=observed.outside)
    return view


def _enforce(context, command, observe, plan_for, view):
    backend = backends.detect(context.config)
    before = observe(backend)
    plan = plan_for(backend, before)
    actions = execute(plan)
    after = observe(backend)
    fields = {"backend": backend.name, "cpus": backend.cpus, "changed": bool(actions)}
    fields.update(before=view(before), after=view(after), actions=actions, reason="" if actions else plan.reason)
    return ok(command, **fields)


def quota_get(context, command):
    account_of(context, command.uid, mutating=False)
    backend = backends.detect(context.config)
    return ok(command, backend=backend.name, cpus=backend.cpus, **_quota_view(backend.observe_quota(command.uid)))


def quota_set(context, command):
    """``quota-set`` and ``quota-clear`` (whose ``ppm`` is None)."""
    uid = command.uid
    account_of(context, uid, mutating=True)
    return _enforce(
        context,
        command,
        lambda backend: backend.observe_quota(uid),
        lambda backend, observed: backend.plan_quota(uid, command.ppm, observed),
        _quota_view,
    )


def gpu_state(context, command):
    account_of(context, command.uid, mutating=False)
    backend = backends.detect(context.config)
    return ok(command, backend=backend.name, **_gpu_view(backend.observe_gpu(command.uid)))


def gpu_block(context, command):
    """``gpu-block UID``: every NVIDIA device; ``--minors 0,3``: only /dev/nvidia0 and /dev/nvidia3."""
    return _gpu(context, command, gpumask.ALL if command.minors is None else command.minors)


def gpu_unblock(context, command):
    return _gpu(context, command, None)


def _gpu(context, command, mask):
    uid = command.uid
    account_of(context, uid, mutating=True)
    return _enforce(
        context,
        command,
        lambda backend: backend.observe_gpu(uid),
        lambda backend, observed: backend.plan_gpu(uid, mask, observed),
        _gpu_view,
    )


def kill_process(context, command):
    account_of(context, command.uid, mutating=True)
    proc_root = context.config.proc_root
    boot_id = procfs.read_text(proc_root + "/sys/kernel/random/boot_id").strip()
    target = kill.Target(command.boot_id, command.pid, command.start_ticks, command.uid)
    result = kill.kill(target, boot_id, proc_root, context.config.kill_grace_seconds)
    fields = {"pid": command.pid, "outcome": result.outcome, "signals": result.signals}
    fields.update(waited_ms=result.waited_ms, detail=result.detail)
    if result.outcome != "unkillable":
        return ok(command, **fields)
    failed = {"ok": False, "verb": command.verb, "uid": command.uid}
    failed.update(fields, error={"kind": "failed", "reason": "unkillable", "detail": result.detail})
    return failed, EXIT_FAILED


def _document_for(context, command, kind):
    """The controller's JSON document on stdin for ``command.uid``'s file, checked by ``kind.problems`` (the
    ``status`` or ``queuestatus`` module) against the account; ``Refused`` with every problem found."""
    account = account_of(context, command.uid, mutating=True, include_exemptions=False)
    document = status.decode(context.read_stdin(kind.MAX_DOCUMENT_BYTES + 1), kind.MAX_DOCUMENT_BYTES)
    found = kind.problems(document, command.uid, account.name)
    if found:
        raise Refused("bad_document", "; ".join(found))
    return document


def status_write(context, command):
    document = _document_for(context, command, status)
    path = "%s/%d.status" % (context.config.status_dir, command.uid)
    changed = status.write(context.config.status_dir, command.uid, status.render(document))
    return ok(command, path=path, changed=changed)


def queue_status(context, command):
    document = _document_for(context, command, queuestatus)
    name = queuestatus.file_name(command.uid)
    changed = atomicfile.replace(context.config.status_dir, name, queuestatus.render(document))
    return ok(command, path="%s/%s" % (context.config.status_dir, name), changed=changed)


def notify_user(context, command):
    account = account_of(context, command.uid, mutating=True)
    message = notify.message_from(context.read_stdin(notify.MAX_MESSAGE_BYTES + 1))
    lines = notify.terminal_lines(account.name, command.uid, context.config.proc_root)
    written, skipped = notify.write_to_terminals(lines, command.uid, message)
    return ok(command, written=written, skipped=skipped)
