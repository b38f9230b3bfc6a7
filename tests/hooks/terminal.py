"""An interactive shell on a real pseudo-terminal, driven like a person at a keyboard.

The shell gets the pty as its controlling terminal (``setsid --ctty``), so bash is interactive with job
control exactly as under sshd. Every read waits for the shell's prompt (``PROMPT``, which the test
user's ~/.bashrc sets) before the next line is typed.
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping

PROMPT = "glh-ready$ "
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class TerminalError(AssertionError):
    """The shell did not answer as expected; ``transcript`` holds everything it wrote."""

    def __init__(self, message: str, transcript: str) -> None:
        super().__init__(f"{message}\n--- transcript ---\n{transcript}")
        self.transcript = transcript


class Terminal:
    """Starts ``argv`` on a new pty. Use ``login()`` first, then ``type()`` lines, then ``exit()``."""

    def __init__(self, argv: list[str], env: Mapping[str, str], timeout: float = 20.0) -> None:
        self.timeout = timeout
        self._master, slave = os.openpty()
        # Wide enough that readline never scrolls a typed line sideways.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 1000, 0, 0))
        try:
            self._process = subprocess.Popen(
                ["setsid", "--ctty", *argv], stdin=slave, stdout=slave, stderr=slave, env=dict(env), close_fds=True
            )
        finally:
            os.close(slave)
        self._pending = ""
        self.transcript = ""

    def _read_until(self, marker: str | None) -> str:
        """Text up to ``marker`` (consumed), or up to end of file when ``marker`` is None."""
        deadline = time.monotonic() + self.timeout
        while marker is None or marker not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TerminalError(f"no {marker!r} within {self.timeout} s", self.transcript)
            ready, _, _ = select.select([self._master], [], [], remaining)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: the last holder of the pty's other side has gone
                chunk = b""
            if not chunk:
                if marker is None:
                    break
                raise TerminalError(f"shell ended before {marker!r}", self.transcript)
            text = _ANSI.sub("", chunk.decode("utf-8", errors="replace").replace("\r", ""))
            self._pending += text
            self.transcript += text
        if marker is None:
            text, self._pending = self._pending, ""
            return text
        text, _, self._pending = self._pending.partition(marker)
        return text

    def login(self) -> str:
        """Everything the shell printed before its first prompt: the login banner."""
        return self._read_until(PROMPT)

    def type(self, line: str) -> str:
        """Types ``line`` and returns what it printed (its echo removed) before the next prompt."""
        os.write(self._master, line.encode() + b"\n")
        output = self._read_until(PROMPT)
        echoed, _, rest = output.partition("\n")
        if echoed != line:
            raise TerminalError(f"expected the echo of {line!r}, got {echoed!r}", self.transcript)
        return rest

    def exit(self, line: str = "exit") -> tuple[int, str]:
        """Types ``line`` (which should end the shell); returns its exit status and last output."""
        os.write(self._master, line.encode() + b"\n")
        output = self._read_until(None)
        return self._process.wait(timeout=self.timeout), output

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        os.close(self._master)
