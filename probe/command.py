"""The one validator of node-command requests, shared by the SSH and the local path.

A request is a list of words. Over SSH the words come from ``split_ssh_command`` (strict single-space
splitting of ``SSH_ORIGINAL_COMMAND``); locally they are argv. Nothing here touches the system.

After the verb come its required arguments, each either positional (in order) or as ``--name VALUE``, then
its optional ones, only as ``--name VALUE`` (``gpu-block 1001``, ``gpu-block --uid 1001 --minors 0,3``).
"""

import collections
import re

from probe.errors import Refused

MAX_COMMAND_BYTES = 256
_WORD = re.compile(r"[A-Za-z0-9,-]{1,64}\Z")
_MINORS = re.compile(r"(0|[1-9][0-9]{0,2})(,(0|[1-9][0-9]{0,2}))*\Z")
# /dev/nvidiaN minors: 254 is nvidia-modeset and 255 nvidiactl, shared by every GPU and never masked alone.
MAX_GPU_MINOR = 253
_DECIMAL = re.compile(r"(0|[1-9][0-9]*)\Z")
_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

Command = collections.namedtuple("Command", "verb uid ppm pid start_ticks boot_id minors", defaults=(None,) * 6)
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


def _minors(word):
    """A comma-separated set of GPU minors, returned sorted and unique as a tuple."""
    if not _MINORS.match(word):
        raise ValueError("not a comma-separated list of decimal minors")
    values = [int(part) for part in word.split(",")]
    if len(set(values)) != len(values):
        raise ValueError("a minor is repeated")
    if max(values) > MAX_GPU_MINOR:
        raise ValueError("a GPU minor is 0..%d" % MAX_GPU_MINOR)
    return tuple(sorted(values))


_ARGUMENT_TYPES = {
    "uid": _bounded(0, 4294967294),
    "ppm": _bounded(1, 1000000),
    "pid": _bounded(1, 4194304),
    "start_ticks": _bounded(0, 2**64 - 1),
    "boot_id": _boot_id,
    "minors": _minors,
}

# verb -> required argument names (in positional order); OPTIONS: verb -> its optional ones.
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
        ("gpu-requests", ()),
        ("gpu-requests-done", ()),
        ("queue-status", ("uid",)),
    ]
)
OPTIONS = {"gpu-block": ("minors",)}


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
    words_of = _assign(verb, names, OPTIONS.get(verb, ()), arguments)
    values = {}
    for name, word in words_of.items():
        try:
            values[name] = _ARGUMENT_TYPES[name](word)
        except ValueError as error:
            raise Refused("bad_argument", "%s=%s: %s" % (name, ascii(word), error)) from None
    return Command(verb=verb, **values)


def _assign(verb, names, optional, arguments):
    """``{name: word}``: the leading positional words fill ``names`` in order, then ``--name VALUE`` pairs."""
    positional = 0
    while positional < len(arguments) and not arguments[positional].startswith("--"):
        positional += 1
    if positional > len(names):
        raise Refused("bad_arity", "%s takes %d argument(s), got %d" % (verb, len(names), positional))
    assigned = {names[index]: arguments[index] for index in range(positional)}
    pairs = arguments[positional:]
    if len(pairs) % 2:
        raise Refused("bad_arity", "%s: an option without its value" % verb)
    for index in range(0, len(pairs), 2):
        flag, word = pairs[index], pairs[index + 1]
        name = flag[2:].replace("-", "_")
        if not flag.startswith("--") or name not in names + optional:
            raise Refused("bad_option", "%s takes no option %s" % (verb, ascii(flag)))
        if name in assigned:
            raise Refused("bad_option", "%s: %s given twice" % (verb, ascii(flag)))
        assigned[name] = word
    missing = [name for name in names if name not in assigned]
    if missing:
        raise Refused("bad_arity", "%s takes %d argument(s), missing %s" % (verb, len(names), " ".join(missing)))
    return assigned
