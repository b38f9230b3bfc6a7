"""The API as production runs it: ``gpuledger api serve`` in its own process (so its memory can be read from
/proc and its uvicorn gets exactly the production options), and a raw keep-alive HTTP/1.1 client cheap
enough to send tens of thousands of requests on a shared 2-core machine (httpx spends more CPU per request
than the server)."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
_LENGTH = re.compile(rb"(?im)^content-length: *([0-9]+)\r$")


@dataclass(frozen=True)
class Live:
    port: int
    pid: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+([0-9]+) kB", status).group(1))  # type: ignore[union-attr]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def api_process(app_url: str, log: Path, **settings: str) -> Iterator[Live]:
    """``gpuledger api serve`` on a free loopback port; ``settings`` are GPULEDGER_API_* keys without the prefix."""
    port = free_port()
    env = {**os.environ, "GPULEDGER_DATABASE_URL": app_url, "GPULEDGER_API_HOST": "127.0.0.1",
           "GPULEDGER_API_PORT": str(port), "PYTHONPATH": str(ROOT),
           **{f"GPULEDGER_API_{k.upper()}": v for k, v in settings.items()}}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gpuledger.cli", "api", "serve"], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        yield Live(port, proc.pid, log)
    finally:
        proc.terminate()
        proc.wait(20)


def hammer(port: int, request: bytes, count: int, connections: int = 4) -> Counter[int]:
    """Send ``request`` ``count`` times over ``connections`` keep-alive connections; the statuses seen."""
    statuses: Counter[int] = Counter()

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(n):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                statuses[int(head[9:12])] += 1
        finally:
            writer.close()
            await writer.wait_closed()

    async def run() -> None:
        share, extra = divmod(count, connections)
        await asyncio.gather(*(one(share + (i < extra)) for i in range(connections)))

    asyncio.run(run())
    return statuses


def get(path: str, token: str | None = None, **headers: str) -> bytes:
    """A raw GET request; ``headers`` keyword names use ``_`` for ``-``."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
