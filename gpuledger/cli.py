"""Root of the ``gpuledger`` command line.

Each package that offers commands has a ``<package>/cli.py`` with ``register(subparsers)``; it adds its
subcommands and sets ``func(args) -> int`` (the exit status) on each. This module only composes them,
so the dependency direction between packages stays as it is.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence
from types import ModuleType

from gpuledger import completion

COMMAND_MODULES = ("ledger.cli", "ledger.importing.cli", "collector.cli", "api.cli", "control.cli", "gpuledger.main")


def import_optional(module_name: str) -> ModuleType | None:
    """The module, or None when it (not something it imports) does not exist in this installation."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None


def build_parser() -> argparse.ArgumentParser:
    # plain text: --help shows descriptions verbatim, so no reST markup from docstrings
    parser = argparse.ArgumentParser(prog="gpuledger", description="GPU-cluster accounting: money, the controller"
                                     " that charges and enforces, and its JSON API")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = import_optional(module_name)
        if module is not None:
            module.register(subparsers)
    completion.register(subparsers, parser)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("gpuledger")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
