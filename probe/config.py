"""The node config ``/etc/gpuledger/node.json``: strict types, defaults for a missing file or key."""

import collections
import errno
import json
import re

from probe.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def _names(key, value):
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, "must be a list of non-empty strings")
    return tuple(value)


def _optional_uid(key, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4294967294:
        raise ConfigError(key, "must be null or an integer 1..4294967294")
    return value


def _path(key, value):
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise ConfigError(key, "must be an absolute path")
    return value.rstrip("/") or "/"


def _flag(key, value):
    if not isinstance(value, bool):
        raise ConfigError(key, "must be true or false")
    return value


def _seconds(key, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 3600:
        raise ConfigError(key, "must be an integer 0..3600")
    return value


def _group_name(key, value):
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(key, "must match [A-Za-z0-9_][A-Za-z0-9_.-]*")
    return value


# key -> (default, validator); the order is the order of NodeConfig's fields.
_KEYS = collections.OrderedDict(
    [
        ("exempt_users", ([], _names)),
        ("exempt_groups", ([], _names)),
        ("uid_min", (None, _optional_uid)),
        ("status_dir", ("/run/gpuledger/status", _path)),
        ("collect_cmdline", (False, _flag)),
        ("kill_grace_seconds", (30, _seconds)),
        ("cgroup_root", ("/sys/fs/cgroup", _path)),
        ("cgroup_parent", ("gpuledger", _group_name)),
        ("proc_root", ("/proc", _path)),
        ("web_login_dir", ("/var/spool/gpuledger/web-login", _path)),
        ("gpu_request_dir", ("/var/spool/gpuledger/gpu-requests", _path)),
        ("gpu_request_hold_dir", ("/var/spool/gpuledger/gpu-requests.held", _path)),
        ("gpu_mask_dir", ("/run/gpuledger/gpu-masks", _path)),
    ]
)

NodeConfig = collections.namedtuple("NodeConfig", list(_KEYS))
NodeConfig.__doc__ = "The validated node config; see docs/node-command.md for every key."


def from_mapping(data):
    """Validate a decoded config object; unknown keys and wrong types raise ``ConfigError`` naming the key."""
    if not isinstance(data, dict):
        raise ConfigError("(document)", "must be a JSON object")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(unknown[0], "unknown key")
    values = {}
    for key, (default, validate) in _KEYS.items():
        values[key] = validate(key, data[key] if key in data else default)
    return NodeConfig(**values)


def load(path):
    """Read the config at ``path``; a missing file means every default."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(1 << 20)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return from_mapping({})
        raise ConfigError("(file)", "%s: %s" % (path, error.strerror)) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as error:
        raise ConfigError("(file)", "%s is not valid JSON: %s" % (path, error)) from None
    return from_mapping(data)
