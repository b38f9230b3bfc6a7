"""Fixtures for the SSH hook tests: the hook installed in private mount namespaces, test users, terminals."""

from __future__ import annotations

import pwd
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.hooks.node import ENV, HookNode, create_user, hooks_available, remove_user, write_rc
from tests.hooks.terminal import PROMPT, Terminal

EXEMPT = "glh-exempt"
# What every test user's ~/.bashrc is: Debian's skeleton, then the prompt the terminal driver waits for.
DEFAULT_RC = Path("/etc/skel/.bashrc").read_text() + f"PS1='{PROMPT}'\n"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents and "node" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.root)
            if not hooks_available():
                item.add_marker(pytest.mark.skip(reason="needs root, unshare, runuser, setsid and useradd"))


@pytest.fixture(scope="session")
def node() -> Iterator[HookNode]:
    installed = HookNode(exempt_users=f"nobody {EXEMPT}")
    yield installed
    installed.remove()


@pytest.fixture(scope="session")
def _users() -> Iterator[dict[str, pwd.struct_passwd]]:
    users = {name: create_user(name) for name in ("glh-alice", EXEMPT)}
    yield users
    for name in users:
        remove_user(name)


@pytest.fixture
def alice(_users: dict[str, pwd.struct_passwd], node: HookNode) -> Iterator[pwd.struct_passwd]:
    """The ordinary test user, with the default ~/.bashrc and no status file at the start of each test."""
    user = _users["glh-alice"]
    write_rc(user, DEFAULT_RC)
    node.status.clear()
    yield user
    node.status.clear()


@pytest.fixture
def exempt(_users: dict[str, pwd.struct_passwd], node: HookNode) -> pwd.struct_passwd:
    user = _users[EXEMPT]
    write_rc(user, DEFAULT_RC)
    return user


@pytest.fixture
def terminal(node: HookNode) -> Iterator[Callable[..., Terminal]]:
    """Opens interactive shells: ``terminal(user)`` is an SSH-like login (``runuser -l``), on the session's
    node unless ``on`` names another; all are closed afterwards."""
    opened: list[Terminal] = []

    def open_terminal(user: pwd.struct_passwd | None = None, *, hooked: bool = True,
                      argv: list[str] | None = None, on: HookNode | None = None) -> Terminal:
        command = argv if argv is not None else ["runuser", "-l", user.pw_name] if user else []
        shell = Terminal((on or node).argv(command, hooked=hooked), ENV)
        opened.append(shell)
        return shell

    yield open_terminal
    for shell in opened:
        shell.close()
