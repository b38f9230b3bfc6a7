"""Structured logs: one JSON object per line, with the node a message is about as its own field.

Everything a node sends (user names, process names, error text) can contain control characters or
terminal escapes; JSON encoding escapes them, so a log line can never be forged or a terminal driven
through it.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

ROOT = "gpuledger"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        node = getattr(record, "node", None)
        if node is not None:
            entry["node"] = node
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class _NodeAdapter(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return msg, kwargs


def node_logger(node: str) -> logging.LoggerAdapter[logging.Logger]:
    """The controller's logger with ``node`` attached to every record."""
    return _NodeAdapter(logging.getLogger(f"{ROOT}.controller"), {"node": node})


def configure(stream: TextIO = sys.stderr, level: int = logging.INFO) -> None:
    """Send the ``gpuledger`` loggers to ``stream`` as JSON lines (the controller process calls this once)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ROOT)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
