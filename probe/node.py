"""``gpuledger-node``: the forced command of the ``gpuledger`` account, and ``python3 -m probe``.

Over SSH the request comes only from SSH_ORIGINAL_COMMAND and the config path is fixed; locally it
comes from argv. Both go through ``probe.command.parse``. One JSON document goes to stdout.
"""

import importlib
import json
import os
import signal
import sys

from probe import command as grammar
from probe import config as node_config
from probe import journal, nvml
from probe.accounts import Accounts, Policy, resolve_uid_min
from probe.constants import DEFAULT_CONFIG_PATH, EXIT_INTERNAL, SSH_MARKERS
from probe.errors import ProbeError, Refused
from probe.verbs import Context

# verb -> (module, function): the enforcement module is imported only by the verbs that need it.
HANDLERS = {
    "version": ("probe.verbs", "version"),
    "sample": ("probe.verbs", "sample"),
    "quota-get": ("probe.enforce", "quota_get"),
    "quota-set": ("probe.enforce", "quota_set"),
    "quota-clear": ("probe.enforce", "quota_set"),
    "gpu-state": ("probe.enforce", "gpu_state"),
    "gpu-block": ("probe.enforce", "gpu_block"),
    "gpu-unblock": ("probe.enforce", "gpu_unblock"),
    "kill": ("probe.enforce", "kill_process"),
    "status-write": ("probe.enforce", "status_write"),
    "notify": ("probe.enforce", "notify_user"),
    "session-open": ("probe.session", "session_open"),
    "login-codes": ("probe.logincodes", "login_codes"),
    "gpu-requests": ("probe.gpurequests", "gpu_requests"),
    "gpu-requests-done": ("probe.gpurequests", "gpu_requests_done"),
    "queue-status": ("probe.enforce", "queue_status"),
}
# A login waits for the PAM session hook; past this it is killed (SIGALRM) and the login goes on without it.
SESSION_OPEN_SECONDS = 2


def _request(argv, environ):
    """``(words, config_path)`` for this invocation."""
    # pam_exec hands the hook the PAM environment, which holds sshd's SSH_CONNECTION: the hook's words come from
    # its root-owned PAM line. Over SSH argv cannot carry them (sudo allows exactly no arguments, and resets
    # the environment but for SSH_ORIGINAL_COMMAND, so PAM_TYPE cannot arrive that way either).
    pam_hook = "PAM_TYPE" in environ and list(argv[-1:]) == ["session-open"]
    if not pam_hook and any(marker in environ for marker in SSH_MARKERS):
        if argv:
            raise Refused("arguments_over_ssh", "the forced command takes no arguments")
        words = grammar.split_ssh_command(environ.get("SSH_ORIGINAL_COMMAND"))
        if words[:1] == ["session-open"]:
            raise Refused("pam_only_verb", "session-open is run by pam_exec on the node, never over SSH")
        return words, DEFAULT_CONFIG_PATH
    argv = list(argv)
    # The PAM hook's environment is the PAM environment, which pam_env may fill from files a user writes; its
    # argv is the root-owned PAM line.
    path = DEFAULT_CONFIG_PATH if pam_hook else environ.get("GPULEDGER_NODE_CONFIG") or DEFAULT_CONFIG_PATH
    if argv[:1] == ["--config"] and len(argv) >= 2:
        path, argv = argv[1], argv[2:]
    elif argv and argv[0].startswith("--config="):
        path, argv = argv[0][len("--config=") :], argv[1:]
    return argv, path


def _stdin_reader(stream):
    def read(limit):
        return stream.read(limit)

    return read


def main(argv=None, environ=None, stdin=None, stdout=None, nvml_loader=nvml.load_pynvml):
    """Run one request and return the exit status (docs/node-command.md)."""
    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    stdout = stdout or sys.stdout
    verb = None
    try:
        words, config_path = _request(argv, environ)
        command = grammar.parse(words)
        verb = command.verb
        if verb == "session-open":
            signal.alarm(SESSION_OPEN_SECONDS)
        config = node_config.load(config_path)
        policy = Policy(resolve_uid_min(config.uid_min), config.exempt_users, config.exempt_groups)
        context = Context(config, Accounts(), policy, _stdin_reader(stdin or sys.stdin.buffer), nvml_loader, environ)
        module, function = HANDLERS[verb]
        result, status = getattr(importlib.import_module(module), function)(context, command)
    except ProbeError as error:
        if isinstance(error, Refused):
            journal.refusal(error)
        result, status = {"ok": False, "verb": verb, "error": error.as_dict()}, error.exit_status
    except Exception as error:  # the last resort: report a bug as data instead of a bare traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        detail = "%s: %s" % (type(error).__name__, error)
        result = {"ok": False, "verb": verb, "error": {"kind": "internal", "reason": "bug", "detail": detail}}
        status = EXIT_INTERNAL
    stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    stdout.flush()
    return status
