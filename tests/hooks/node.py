"""A node with the SSH hook installed, without touching the real /etc.

``HookNode`` installs ``hooks/`` the way roles/gpuledger_node does (profile.d, a line at the end of
/etc/bash.bashrc, gpuledger-balance, the configuration lines rewritten), into a root-owned directory under
/run. Commands then run in a private mount namespace where that directory is bind-mounted over
/etc/profile.d and /etc/bash.bashrc, so real login shells read the hook from its real place while every
other process on the machine keeps the untouched files. ``plain`` runs the same command in the same kind
of namespace without the hook: the baseline for "behaves unchanged".
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "hooks" / "gpuledger.sh"
BALANCE = REPO / "hooks" / "gpuledger-balance"
# What the role appends to /etc/bash.bashrc (after its "not interactive: return" line).
BASHRC_LINE = "if [ -r /etc/profile.d/gpuledger.sh ]; then . /etc/profile.d/gpuledger.sh; fi\n"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb", "LANG": "C.UTF-8"}


def configure(text: str, **settings: str) -> str:
    """The hook text with its configuration lines set, as the role's ``lineinfile`` does."""
    lines = text.splitlines(keepends=True)
    for key, value in settings.items():
        if "'" in value:
            raise ValueError(f"{key}: a single quote cannot be written inside the hook's quoting")
        found = [index for index, line in enumerate(lines) if line.lstrip().startswith(f"{key}=")]
        if len(found) != 1:
            raise ValueError(f"no single configuration line {key}= in the hook")
        line = lines[found[0]]
        lines[found[0]] = f"{line[: len(line) - len(line.lstrip())]}{key}='{value}'\n"
    return "".join(lines)


def hooks_available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("unshare", "runuser", "setsid", "useradd"))


@dataclass(frozen=True)
class StatusWriter:
    """Writes status files as the node command does (root:root 0644, temporary file then rename)."""

    directory: Path

    def path(self, uid: int) -> Path:
        return self.directory / f"{uid}.status"

    def write(self, uid: int, fields: Mapping[str, object] | None = None, *, raw: str | None = None) -> Path:
        target = self.path(uid)
        text = raw if raw is not None else "".join(f"{key}={value}\n" for key, value in (fields or {}).items())
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        return target

    def clear(self) -> None:
        for entry in self.directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def status_fields(user: pwd.struct_passwd, **overrides: object) -> dict[str, object]:
    """A valid, fresh status for ``user`` (tier normal) with ``overrides`` applied."""
    fields: dict[str, object] = {
        "version": 1,
        "user": user.pw_name,
        "uid": user.pw_uid,
        "billing_user": user.pw_name,
        "updated_at": int(time.time()),
        "tier": "normal",
        "balance": "123.450000",
        "currency": "CNY",
        "burn_rate_per_hour": "2.500000",
        "time_to_empty_hours": "49.4",
        "gpu_blocked": 0,
        "cpu_quota_percent": "",
        "kill_at": "",
        "notice": "",
        "recharge_hint": "Ask your PI or write to gpu-admin@lab.example to recharge.",
    }
    fields.update(overrides)
    return fields


class HookNode:
    """The hook installed under a fresh root-owned directory in /run; ``remove()`` deletes it."""

    def __init__(self, exempt_users: str = "", wrapped_commands: str | None = None,
                 **more_settings: str) -> None:
        # Under /run rather than /tmp: the hook refuses a status file below any directory others may write.
        self.root = Path(tempfile.mkdtemp(prefix="gpuledger-hooktest-", dir="/run"))
        os.chmod(self.root, 0o755)
        self.status_dir = self.root / "status"
        self.status_dir.mkdir(mode=0o755)
        self.status = StatusWriter(self.status_dir)
        self.profile_d = self.root / "profile.d"
        shutil.copytree("/etc/profile.d", self.profile_d, symlinks=True)
        settings = {"__gl_status_dir": str(self.status_dir), "__gl_exempt_users": exempt_users}
        if wrapped_commands is not None:
            settings["__gl_wrapped_commands"] = wrapped_commands
        settings.update(more_settings)
        installed = self.profile_d / "gpuledger.sh"
        installed.write_text(configure(HOOK.read_text(), **settings))
        os.chmod(installed, 0o644)
        self.bashrc = self.root / "bash.bashrc"
        self.bashrc.write_text(Path("/etc/bash.bashrc").read_text() + BASHRC_LINE)
        os.chmod(self.bashrc, 0o644)
        self.balance = self.root / "gpuledger-balance"
        shutil.copyfile(BALANCE, self.balance)
        os.chmod(self.balance, 0o755)

    def argv(self, command: list[str], *, hooked: bool = True) -> list[str]:
        """``command`` in a private mount namespace, with the hook installed there unless ``hooked`` is false."""
        # Without the hook the same two bind mounts are made (of the originals onto themselves), so that
        # timings compare like with like.
        profile_d, bashrc = (self.profile_d, self.bashrc) if hooked else ("/etc/profile.d", "/etc/bash.bashrc")
        mounts = f"mount --bind {profile_d} /etc/profile.d && mount --bind {bashrc} /etc/bash.bashrc && "
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", mounts + 'exec "$@"', "sh",
                *command]

    def sshd_wrapper(self) -> Path:
        """An executable that starts /usr/sbin/sshd (with its arguments) inside a namespace with the hook."""
        wrapper = self.root / "sshd-with-hook"
        wrapper.write_text("#!/bin/sh\nexec " + shlex.join(self.argv(["/usr/sbin/sshd"])) + ' "$@"\n')
        os.chmod(wrapper, 0o755)
        return wrapper

    def run(self, command: list[str], *, hooked: bool = True, stdin: bytes = b"",
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self.argv(command, hooked=hooked), input=stdin, capture_output=True,
                              env=dict(env or ENV), timeout=60)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def create_user(name: str) -> pwd.struct_passwd:
    """A fresh local user with a home from /etc/skel (an old one left by a killed run is replaced)."""
    remove_user(name)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)
    # No password, but not locked: sshd (UsePAM no) refuses even key logins to a locked account.
    subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


def remove_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
    # userdel warns (non-zero) about a missing mail spool; what matters is that the account is gone.
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    raise RuntimeError(f"could not remove test user {name}")


def write_rc(user: pwd.struct_passwd, text: str, name: str = ".bashrc") -> None:
    path = Path(user.pw_dir) / name
    path.write_text(text)
    os.chown(path, user.pw_uid, user.pw_gid)
