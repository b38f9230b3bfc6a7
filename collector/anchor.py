"""The ledger's chain head, published each tick where the database cannot reach it (issue #13).

A tail cut off the hash chain leaves nothing in the database to recompute: only a head saved elsewhere shows
it. After every tick that reached the database the controller logs the head (``chain anchor <time> <seq>
<sha256>``, logger ``gpuledger.anchor``; ship it to a remote syslog, docs/runbook.md) and, when it changed,
appends the same ``<time> <seq> <sha256>`` line to its anchor file (mode 0600), which ``gpuledger audit verify
--anchor-file`` checks line by line. A failure to read the head or to write the file is logged and counted; it
never stops charging.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from pathlib import Path
from typing import TextIO

from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError

from ledger import chain
from ledger.errors import LedgerError
from ledger.records import ChainHead
from ledger.service import Ledger

log = logging.getLogger("gpuledger.anchor")
# Enough for the last line (a time, a seq, 64 hex digits) with room to spare.
_TAIL_BYTES = 512


def log_to(stream: TextIO) -> None:
    """Write the anchor lines to ``stream`` (the service's journal, and from there a remote syslog) at INFO,
    however the rest of the process logs: the controller configures no logging of its own."""
    if not log.handlers:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


class AnchorLog:
    """Publishes heads; ``path`` None: the log only. Remembers the last head written, so a file gains a line
    only when the chain moved, across restarts too (the file's last line is read at start)."""

    def __init__(self, path: Path | None, failures: Counter | None = None) -> None:
        self.path = path
        self._failures = failures
        self._written = None if path is None else _last_head(path)

    def publish(self, ledger: Ledger, at: datetime) -> None:
        try:
            head = ledger.chain_head()
        except (DBAPIError, LedgerError) as exc:
            self._failed("could not read the chain head: %s", exc)
            return
        if head is None:
            return
        line = chain.anchor_line(head, at)
        log.info("chain anchor %s", line)
        if self.path is None or head == self._written:
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as out:
                os.fchmod(fd, 0o600)  # a file made by hand keeps its mode through O_CREAT: only ours may read it
                out.write(line + "\n")
        except OSError as exc:
            self._failed("could not append to the anchor file %s: %s", self.path, exc)
            return
        self._written = head

    def _failed(self, message: str, *args: object) -> None:
        log.warning(message, *args)
        if self._failures is not None:
            self._failures.inc()


def _last_head(path: Path) -> ChainHead | None:
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - _TAIL_BYTES))
            lines = f.read().decode("utf-8", "replace").split()
    except OSError:
        return None
    if len(lines) < 3 or not lines[-2].isdigit():
        return None
    return ChainHead(int(lines[-2]), lines[-1])
