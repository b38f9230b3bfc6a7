"""Debian 12 virtual machines as test nodes: systemd as PID 1, the unified cgroup v2 hierarchy, logind sessions.

This machine has neither systemd nor cgroup v2, so the probe's systemd backend and the node role on a systemd host
can only be tested inside a guest. ``build_image()`` builds one root filesystem with mmdebstrap
(tests/harness/vm_image.sh) and caches it under ``var/vm/<hash>``, the hash covering the suite, the package list and
the build script. ``VmLab.boot(n)`` starts n ``qemu-system-x86_64`` guests, each from its own throwaway qcow2 overlay
of that image, with the image's own kernel and initrd (no bootloader), user-mode networking and one host port on
127.0.0.1 forwarded to the guest's sshd.

Every node has its own SSH host key, generated here and handed to the guest on a small seed disk that a unit of the
image copies in before sshd starts; the lab's ``known_hosts`` pins exactly those keys and every ssh call checks them
(``StrictHostKeyChecking=yes``). ``close()`` stops the qemu processes this lab started, by their PIDs, and is also
registered with ``atexit``: no guest outlives the test session.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.sshd import _free_port, generate_key

REPO = Path(__file__).resolve().parents[2]
# GPULEDGER_VM_CACHE moves the cache out of the checkout: scripts/test points it at /var/cache, so every clone on
# a machine (CI's included) reuses one image instead of building its own (about 6 minutes on 2 cores).
CACHE = Path(os.environ.get("GPULEDGER_VM_CACHE") or REPO / "var" / "vm")
IMAGE_SCRIPT = Path(__file__).with_name("vm_image.sh")
SUITE = "bookworm"
# What a production node has (systemd, logind via PAM, sshd, sudo, Python 3) and what the node role expects to find.
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "libnss-systemd", "openssh-server", "python3",
    "python3-venv", "sudo", "linux-image-amd64", "iproute2", "procps", "kmod", "udev",
    # A user manager with its own bus (systemd-run --user) and cron, the ways work starts outside an SSH session.
    "dbus-user-session", "cron",
)
USERS = ("root", "gltest", "glcontrol")
TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "ssh", "ssh-keygen")
# Under TCG on a busy 2-core machine sshd answers about 30 s after start; the bound leaves room for a loaded host.
BOOT_TIMEOUT_S = 420.0
# A KVM guest prints the kernel's banner within a second or two; a KVM that cannot run the guest prints nothing.
KVM_PROBE_S = 20.0
PROBE_TIMEOUT_S = 5.0
# One verdict per process: a KVM that failed once is not tried again for the next node.
_accel_verdict: list[str] = []


class VmError(RuntimeError):
    """A guest could not be built, started or reached; ``console`` is the tail of its serial console."""

    def __init__(self, message: str, console: str = "") -> None:
        super().__init__(f"{message}\n--- console tail ---\n{console}" if console else message)
        self.console = console


def vm_unavailable() -> str | None:
    """Why no VM can run on this machine, or None. The only reasons the VM tests skip."""
    if os.geteuid() != 0:
        return "VM nodes need root (mmdebstrap, seed disk ownership)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"VM nodes need {', '.join(missing)} (scripts/test installs qemu-system-x86, qemu-utils, mmdebstrap)"
    return None


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def root(self) -> Path:
        return self.directory / "root.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"


def image_key() -> str:
    digest = hashlib.sha256()
    for part in (SUITE, *PACKAGES):
        digest.update(part.encode() + b"\0")
    digest.update(IMAGE_SCRIPT.read_bytes())
    return digest.hexdigest()[:16]


def build_image(cache: Path = CACHE) -> Image:
    """The cached image, built first when this key has none. A lock keeps two sessions from building it twice."""
    cache.mkdir(parents=True, exist_ok=True)
    image = Image(cache / image_key())
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The script moves its work directory into place only when everything in it is complete.
        if not image.root.exists():
            result = subprocess.run(
                ["bash", str(IMAGE_SCRIPT), str(image.directory), *PACKAGES],
                capture_output=True, text=True, timeout=1800,
            )
            if result.returncode != 0:
                raise VmError(f"building the VM image failed ({result.returncode})", result.stdout + result.stderr)
    return image


def _kvm_usable() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def _ssh_banner(port: int) -> bool:
    """True when sshd greets on ``port``. Before sshd is up, user-mode networking accepts and then says nothing."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT_S) as sock:
            sock.settimeout(PROBE_TIMEOUT_S)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


@dataclass
class VmNode:
    """One guest. ``ssh(user, command)`` runs a shell command line on it as ``user``, host key checked."""

    name: str
    workdir: Path
    client_key: Path
    known_hosts: Path
    port: int
    host_public_key: str
    accel: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {self.host_public_key}"

    def ssh_options(self, key: Path | None = None) -> list[str]:
        """Pinned host key, no agent, no prompts; ``key`` (default: the lab's client key) the only identity.

        No ServerAlive keepalives: every call is bounded by its own subprocess timeout, and a keepalive cut the
        fresh login of a blocked user (its user@.service starts in the slice held to 10 % of one TCG vCPU: 28-36 s
        measured, sshd silent meanwhile) with a bare exit 255."""
        return [
            "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes", "-i", str(key or self.client_key), "-o", "ConnectTimeout=15",
            "-o", "LogLevel=ERROR",
        ]

    def control_path(self, user: str) -> Path:
        return self.workdir / f"mux-{user}.sock"

    def _multiplex(self, user: str, key: Path | None, fresh: bool) -> list[str]:
        """One master connection per user, reused by every later call: a TCG guest spends a second or more of CPU
        on each key exchange. Only for the lab's own key (a call with another key is about that key: it must
        authenticate itself) and never for a ``fresh`` call, which needs a login of its own (a new logind
        session: multiplexed channels share the master's)."""
        if fresh or key is not None:
            return ["-o", "ControlPath=none"]
        # ControlPersist: the master outlives the call that started it; stop() ends it, and 10 minutes unused
        # end it too should a session die without stop().
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_path(user)}",
                "-o", "ControlPersist=600"]

    def ssh_argv(self, user: str, command: str, key: Path | None = None, *, fresh: bool = False) -> list[str]:
        return ["ssh", *self.ssh_options(key), *self._multiplex(user, key, fresh), "-p", str(self.port),
                f"{user}@127.0.0.1", command]

    def ssh(
        self, user: str, command: str, *, timeout: float = 120.0, check: bool = True, stdin: bytes | None = None,
        key: Path | None = None, fresh: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        # Never the inherited stdin: ssh makes its stdin non-blocking, and a client that is killed (a timeout, a
        # terminated loop) leaves it so. On pytest's shared /dev/null that broke every later ansible-playbook
        # ("Non-blocking file handles detected"). An empty input is a pipe of this call's own that ends at once.
        result = subprocess.run(
            self.ssh_argv(user, command, key, fresh=fresh), input=stdin.decode() if stdin is not None else "",
            capture_output=True, text=True, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise VmError(f"{user}@{self.name}: {command!r} exited {result.returncode}\n{result.stdout}{result.stderr}")
        return result

    def push(self, local: Path, remote: str, user: str = "root") -> None:
        """Copy a file to the guest over the same pinned SSH (``cat >``: no scp/sftp quirks)."""
        self.ssh(user, f"cat > {remote}", stdin=local.read_bytes(), timeout=300)

    def console_tail(self, lines: int = 60) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, image: Image, accel: str) -> None:
        self.accel = accel
        overlay = self.workdir / "overlay.qcow2"
        overlay.unlink(missing_ok=True)
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(image.root), str(overlay)],
            check=True, capture_output=True,
        )
        cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else ["-accel", "tcg,thread=multi", "-cpu", "max"]
        argv = [
            "qemu-system-x86_64", "-name", self.name, "-nodefaults", "-no-reboot", "-display", "none",
            "-m", "1024", "-smp", "1", *cpu,
            "-kernel", str(image.kernel), "-initrd", str(image.initrd),
            "-append", "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1",
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-drive", f"file={self.workdir / 'seed.raw'},if=virtio,format=raw,readonly=on",
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.port}-:22",
            "-device", "virtio-net-pci,netdev=net0", "-device", "virtio-rng-pci",
            "-serial", f"file:{self.console_log}", "-monitor", "none",
        ]
        with open(self.workdir / "qemu.log", "ab") as log:
            self._process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def kernel_started(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if not self.running:
                return False
            if "Linux version" in self.console_tail(400):
                return True
            time.sleep(0.5)
        return False

    def wait_for_ssh(self, timeout: float = BOOT_TIMEOUT_S) -> float:
        """Seconds until root can log in with the pinned host key; VmError (console attached) past ``timeout``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.running:
                raise VmError(f"{self.name}: qemu exited before sshd answered", self.console_tail())
            if _ssh_banner(self.port):
                result = self.ssh("root", "true", check=False, timeout=60)
                if result.returncode == 0:
                    return time.monotonic() - started
                if "Host key verification failed" in result.stderr:
                    raise VmError(f"{self.name}: the guest's host key is not the seeded one", result.stderr)
            time.sleep(1.0)
        raise VmError(f"{self.name}: sshd did not answer within {timeout:.0f} s", self.console_tail())

    def _end_masters(self) -> None:
        """Ask each master connection to exit (``ssh -O exit``: by its socket, no process hunting)."""
        for socket_path in self.workdir.glob("mux-*.sock"):
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "127.0.0.1"],
                capture_output=True, timeout=30, check=False,
            )

    def stop(self) -> None:
        self._end_masters()
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # SIGTERM makes qemu close its disks and exit; the overlay is thrown away, so the guest needs no shutdown.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


class VmLab:
    """``VmLab(workdir, image).boot(n)``; always ``close()`` (also registered with atexit)."""

    def __init__(self, workdir: Path, image: Image) -> None:
        self.workdir = workdir
        self.image = image
        self.nodes: list[VmNode] = []
        self.boot_seconds: dict[str, float] = {}
        workdir.mkdir(parents=True, exist_ok=True)
        self.client_key = generate_key(workdir / "id_ed25519", comment="gpuledger-vm-client")
        self.known_hosts = workdir / "known_hosts"
        self.known_hosts.write_text("")
        atexit.register(self.close)

    def _seed(self, node_dir: Path, name: str) -> str:
        seed = node_dir / "seed"
        host_key = generate_key(seed / "ssh_host_ed25519_key", comment=f"root@{name}")
        authorized = seed / "authorized"
        authorized.mkdir()
        public = self.client_key.with_name(self.client_key.name + ".pub").read_text()
        for user in USERS:
            (authorized / user).write_text(public)
        subprocess.run(
            ["mkfs.ext4", "-q", "-L", "glseed", "-d", str(seed), str(node_dir / "seed.raw"), "8M"],
            check=True, capture_output=True,
        )
        # The private key lives on in the seed disk only; the lab needs just the public half to pin.
        text = host_key.with_name(host_key.name + ".pub").read_text().split()
        shutil.rmtree(seed)
        return f"{text[0]} {text[1]}"

    def boot(self, count: int) -> list[VmNode]:
        """Start ``count`` new nodes one after the other (two booting TCG guests would share 2 cores) and wait."""
        for _ in range(count):
            name = f"glnode-{len(self.nodes) + 1}"
            node_dir = self.workdir / name
            node_dir.mkdir()
            node = VmNode(name, node_dir, self.client_key, self.known_hosts, _free_port(), self._seed(node_dir, name))
            self.nodes.append(node)
            with open(self.known_hosts, "a") as known:
                known.write(node.known_hosts_line() + "\n")
            started = time.monotonic()
            accel = self._accel(node)
            if not node.running:
                node.start(self.image, accel)
            node.wait_for_ssh()
            self.boot_seconds[name] = time.monotonic() - started
        return self.nodes[len(self.nodes) - count:]

    def _accel(self, node: VmNode) -> str:
        """KVM where it runs the guest, else TCG. The sandbox's /dev/kvm opens but is kvm_pvm (software
        virtualization that runs only PVM-built guest kernels): qemu's ``-cpu host`` exits at once there ("failed to
        set MSR 0x10a", 2026-12-04), so the probe costs well under a second before TCG takes over."""
        forced = os.environ.get("GPULEDGER_VM_ACCEL")
        if forced:
            return forced
        if not _accel_verdict:
            if _kvm_usable():
                node.start(self.image, "kvm")
                if node.kernel_started(KVM_PROBE_S):
                    _accel_verdict.append("kvm")
                    return "kvm"
                node.stop()
                node.console_log.rename(node.workdir / "console-kvm-failed.log")
            _accel_verdict.append("tcg")
        return _accel_verdict[0]

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
