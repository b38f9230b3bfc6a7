"""The one environment reader of every package (ledger, collector, api): env-first, ``GPULEDGER_`` keys, typed.

``Config`` wraps a mapping (``os.environ`` in production, a dict in tests) and reads one key at a time, as
Starlette's ``Config`` does: a getter per type, a default when the key is absent, and on the first bad value a
``ledger.errors.ConfigError`` that names the key. A key that is set but empty is a value like any other (each
getter says what it makes of it), not an absent key.

Secrets (database URLs, passwords, webhook URLs that embed a token) come as ``Secret``: masked in ``repr`` and
``str`` so logs and tracebacks never show them; ``reveal()`` is the one way to the value. They may come from
a file named by ``<KEY>_FILE`` instead (systemd credentials, Docker secrets); the key itself wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ledger.errors import ConfigError, LedgerError
from ledger.money import parse_amount

PREFIX = "GPULEDGER_"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
# Empty counts as false: `GPULEDGER_DRY_RUN=` in an environment file turns the setting off.
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
_DIGITS = re.compile(r"[0-9]+")

T = TypeVar("T")
D = TypeVar("D")
C = TypeVar("C", bound=str)


@dataclass(frozen=True)
class Secret:
    """A string that never shows itself in ``repr`` or ``str`` (logs, tracebacks); ``reveal()`` gives it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


class Config:
    """Typed reads of ``<prefix><NAME>`` keys from ``environ``; every getter takes the name without the prefix."""

    def __init__(self, environ: Mapping[str, str], prefix: str = PREFIX) -> None:
        self._environ = environ
        self.prefix = prefix

    def key(self, name: str) -> str:
        """The full key of ``name`` (for messages and ``ConfigError``)."""
        return self.prefix + name

    def __contains__(self, name: str) -> bool:
        return self.key(name) in self._environ

    def get(self, name: str, parse: Callable[[str], T], default: D) -> T | D:
        """``parse(value)``, or ``default`` when the key is absent; ``parse`` raises ValueError with the reason."""
        key = self.key(name)
        if key not in self._environ:
            return default
        try:
            return parse(self._environ[key])
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None

    def text(self, name: str, default: D) -> str | D:
        return self.get(name, str, default)

    def integer(self, name: str, default: D, *, minimum: int = 0, maximum: int | None = None) -> int | D:
        """A decimal integer in [minimum, maximum] (no sign; surrounding whitespace ignored)."""
        def parse(text: str) -> int:
            digits = text.strip()
            value = int(digits) if _DIGITS.fullmatch(digits) else None
            if value is None or value < minimum or (maximum is not None and value > maximum):
                bounds = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
                raise ValueError(f"must be an integer {bounds}, got {text!r}")
            return value
        return self.get(name, parse, default)

    def boolean(self, name: str, default: D) -> bool | D:
        """One of TRUE_WORDS or FALSE_WORDS, any case."""
        def parse(text: str) -> bool:
            word = text.strip().lower()
            if word in TRUE_WORDS or word in FALSE_WORDS:
                return word in TRUE_WORDS
            raise ValueError(f"must be true or false ({'/'.join(sorted(TRUE_WORDS))} or "
                             f"{'/'.join(sorted(FALSE_WORDS - {''}))}), got {text!r}")
        return self.get(name, parse, default)

    def amount(self, name: str, default: D) -> int | D:
        """A decimal amount of money (``"12.5"``, ``"-5"``) in micro-units, exact (ledger.money.parse_amount)."""
        def parse(text: str) -> int:
            try:
                return parse_amount(text)
            except LedgerError as exc:
                raise ValueError(exc.message) from None
        return self.get(name, parse, default)

    def choice(self, name: str, choices: tuple[C, ...], default: C) -> C:
        """One of ``choices`` exactly; give a ``Literal`` tuple to get the ``Literal`` type back."""
        def parse(text: str) -> C:
            for option in choices:
                if text == option:
                    return option
            raise ValueError(f"must be one of {', '.join(choices)}, got {text!r}")
        return self.get(name, parse, default)

    def items(self, name: str) -> tuple[str, ...]:
        """A comma-separated list, items stripped, empty items dropped; absent or empty is ``()``."""
        return self.get(name, lambda text: tuple(item.strip() for item in text.split(",") if item.strip()), ())

    def secret(self, name: str) -> Secret | None:
        """The key's value, else the contents of the file ``<KEY>_FILE`` names (trailing newline dropped), else
        None. A file that cannot be read is a ConfigError naming ``<KEY>_FILE``; the value is never repeated."""
        key = self.key(name)
        if key in self._environ:
            return Secret(self._environ[key])
        file_key = key + "_FILE"
        if file_key not in self._environ:
            return None
        path = self._environ[file_key]
        try:
            return Secret(Path(path).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(file_key, f"cannot read {path!r}: {exc.strerror}") from exc
