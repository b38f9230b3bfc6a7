"""The known_hosts file the project manages: the only source of trust for node host keys.

Nothing here learns a key at connect time. ``pin`` is called by ``gpuledger nodes trust`` after an
operator saw the fingerprint; it refuses to replace a different pinned key unless told to, by name.
``KnownHostsCache`` parses the file once and again only when it changes, so a 1,000-node tick does
not re-read a 1,000-line file per connection.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from collector.errors import HostKeyError


def host_pattern(address: str, port: int) -> str:
    """How OpenSSH writes ``address``/``port`` in known_hosts."""
    return address if port == 22 else f"[{address}]:{port}"


def _is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The SHA256 fingerprint as ``ssh-keygen -l`` prints it."""
    return str(key.get_fingerprint("sha256"))


def _key_line(key: asyncssh.SSHKey) -> str:
    """``type base64`` without the comment, which is the node's to choose and ours to ignore."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


class KnownHostsCache:
    """``path`` parsed into an ``asyncssh.SSHKnownHosts``, re-parsed whenever the file changes.

    A missing file means no host is trusted (every connection fails as ``hostkey_mismatch``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._parsed = asyncssh.SSHKnownHosts()

    def current(self) -> asyncssh.SSHKnownHosts:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._parsed = None, asyncssh.SSHKnownHosts()
            return self._parsed
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            self._parsed = asyncssh.import_known_hosts(self.path.read_text())
            self._stamp = stamp
        return self._parsed

    def pinned(self, address: str, port: int) -> list[asyncssh.SSHKey]:
        """The host keys pinned for ``address``/``port`` (OpenSSH's port-less fallback included)."""
        # An IP address is matched both as a name and as an address, so one line can come back twice.
        matched = self.current().match(address, address if _is_ip(address) else "", port)[0]
        return list({key.public_data: key for key in matched}.values())


@dataclass(frozen=True)
class PinResult:
    """What ``pin`` did: ``added`` (a new line), ``unchanged`` (already pinned) or ``replaced``."""

    host: str
    fingerprint: str
    action: str
    previous: tuple[str, ...] = ()


def pin(path: Path, address: str, port: int, key: asyncssh.SSHKey, *, replace: bool = False) -> PinResult:
    """Pin ``key`` for ``address``/``port`` in ``path`` (created with mode 0644 if missing).

    Raises ``HostKeyError`` when a different key is pinned and ``replace`` is false, or when the old
    key sits on a line this function cannot rewrite safely (a hashed or multi-host entry).
    """
    path = Path(path)
    pattern = host_pattern(address, port)
    wanted = fingerprint(key)
    existing = KnownHostsCache(path).pinned(address, port)
    previous = tuple(fingerprint(k) for k in existing)
    if wanted in previous:
        return PinResult(pattern, wanted, "unchanged", previous)
    lines = path.read_text().splitlines() if path.exists() else []
    if existing and not replace:
        raise HostKeyError(
            pattern,
            f"a different host key is pinned ({', '.join(previous)}); the node now offers {wanted}. "
            "Verify the change out of band, then repeat with --replace",
        )
    kept = []
    for line in lines:
        fields = line.split()
        if existing and fields and not line.lstrip().startswith("#") and fields[0] == pattern:
            continue
        kept.append(line)
    remaining = asyncssh.import_known_hosts("\n".join(kept)).match(address, address if _is_ip(address) else "", port)[0]
    if remaining:
        raise HostKeyError(pattern, "the old key is pinned by a hashed or multi-host line; edit the file by hand")
    kept.append(f"{pattern} {_key_line(key)}")
    _write_atomically(path, "\n".join(kept) + "\n")
    return PinResult(pattern, wanted, "replaced" if existing else "added", previous)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
