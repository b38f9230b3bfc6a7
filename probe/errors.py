"""The node command's errors: each carries the kind, a stable reason and a detail for the caller."""

from probe import constants


class ProbeError(Exception):
    """Base class; ``kind`` and ``exit_status`` are fixed per subclass (docs/node-command.md)."""

    kind = "internal"
    exit_status = constants.EXIT_INTERNAL

    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail

    def as_dict(self):
        return {"kind": self.kind, "reason": self.reason, "detail": self.detail}


class Refused(ProbeError):
    """The request is not allow-listed, malformed, or targets a protected identity."""

    kind = "refused"
    exit_status = constants.EXIT_REFUSED


class Failed(ProbeError):
    """The request was valid but the node could not carry it out (the controller retries)."""

    kind = "failed"
    exit_status = constants.EXIT_FAILED


class Unsupported(ProbeError):
    """This node has no mechanism for the request."""

    kind = "unsupported"
    exit_status = constants.EXIT_UNSUPPORTED


class ConfigError(ProbeError):
    """The node config is malformed; ``reason`` is the key."""

    kind = "config"
    exit_status = constants.EXIT_CONFIG
