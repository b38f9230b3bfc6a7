"""The one validator of node-command requests, shared by the SSH and the local path.

A request is a list of words. Over SSH the words come from ``split_ssh_command`` (strict single-space
splitting of ``SSH_ORIGINAL_COMMAND``); locally they are argv. Nothing here touches the system.
"""

import collections
import re

from probe.errors import Refused

MAX_COMMAND_BYTES = 256
_WORD = re.compile(r"[A-Za-z0-9-]{1,64}\Z")
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

Command = collections.namedtuple("Command", "verb uid ppm pid start_ticks boot_id", defaults=(None,) * 5)
Command.__doc__ = "A validated request: the verb and its typed arguments (unused ones are None)."


def _bounded(low, high):
    def parse(word):
        if not _DECIMAL.match(word) or len(word) > 20:
            raise ValueError("not a decimal integer")
        value = int(word)
        if not low <= value <= high:
            raise ValueError("out of range %d..%d" % (low, high))
        return value

    return parse


def _boot_id(word):
    if not _BOOT_ID.match(word):
        raise ValueError("not a lowercase UUID")
    return word


_ARGUMENT_TYPES = {
    "uid": _bounded(0, 4294967294),
    "ppm": _bounded(1, 1000000),
    "pid": _bounded(1, 4194304),
    "start_ticks": _bounded(0, 2**64 - 1),
    "boot_id": _boot_id,
}

VERBS = collections.OrderedDict(
    [
        ("version", ()),
        ("sample", ()),
        ("quota-get", ("uid",)),
        ("quota-set", ("uid", "ppm")),
        ("quota-clear", ("uid",)),
        ("gpu-state", ("uid",)),
        ("gpu-block", ("uid",)),
        ("gpu-unblock", ("uid",)),
        ("kill", ("boot_id", "pid", "start_ticks", "uid")),
        ("status-write", ("uid",)),
        ("notify", ("uid",)),
        ("session-open", ()),
        ("login-codes", ()),
    ]
)


def split_ssh_command(line):
    """Split ``SSH_ORIGINAL_COMMAND`` into words, refusing anything but printable ASCII single-spaced words."""
    if line is None:
        raise Refused("no_command", "SSH_ORIGINAL_COMMAND is not set")
    if len(line.encode("utf-8", "surrogateescape")) > MAX_COMMAND_BYTES:
        raise Refused("command_too_long", "more than %d bytes" % MAX_COMMAND_BYTES)
    if not line or not all(" " <= ch <= "~" for ch in line):
        raise Refused("bad_characters", ascii(line))
    return line.split(" ")


def parse(words):
    """Return the ``Command`` for ``words`` or raise ``Refused`` naming what is wrong."""
    if not words:
        raise Refused("no_command", "no verb given")
    for word in words:
        if not isinstance(word, str) or not _WORD.match(word):
            raise Refused("bad_word", ascii(word)[:200])
    verb, arguments = words[0], words[1:]
    names = VERBS.get(verb)
    if names is None:
        raise Refused("unknown_verb", ascii(verb))
    if len(arguments) != len(names):
        raise Refused("bad_arity", "%s takes %d argument(s), got %d" % (verb, len(names), len(arguments)))
    values = {}
    for index, name in enumerate(names):
        word = arguments[index]
        try:
            values[name] = _ARGUMENT_TYPES[name](word)
        except ValueError as error:
            raise Refused("bad_argument", "%s=%s: %s" % (name, ascii(word), error)) from None
    return Command(verb=verb, **values)
