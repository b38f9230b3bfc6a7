"""The nodes the controller visits, read from the Ansible inventory ops already keep.

ansible-core's own ``InventoryManager`` and ``VariableManager`` parse it, so INI, YAML, inventory
directories, ``group_vars``/``host_vars`` and Jinja in variables mean exactly what they mean to
``ansible-playbook``. Each host becomes a ``Node``:

| variable | meaning | default |
|---|---|---|
| ``ansible_host`` | address to connect to | the inventory name |
| ``ansible_port`` | SSH port | 22 |
| ``ansible_user`` | the rollout account (display only) | none |
| ``ansible_connection`` | ``local`` = this machine, without SSH; ``ssh``/``smart``/``paramiko`` = SSH | ``ssh`` |
| ``gpuledger_ssh_user`` | the node account the controller logs in as | ``gpuledger`` |
| ``gpuledger_region`` | the registry's region | empty |
| ``gpuledger_listed`` | whether the node takes part (``false`` = skipped by ticks, kept in the registry) | true |
| ``gpuledger_remarks`` | free text for the registry | empty |

Every ``gpuledger_*`` variable is kept in ``Node.variables`` with plain Python types.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from collector.errors import InventoryError
from collector.types import Node

_SSH_CONNECTIONS = frozenset({"ssh", "smart", "paramiko", "paramiko_ssh"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
VAR_PREFIX = "gpuledger_"


def _plain(value: Any) -> Any:
    """Ansible's tagged str/int/list/dict values as plain Python values (immutable containers)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _plain(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return None if value is None else str(value)


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return True if text in _TRUE else False if text in _FALSE else None


def host_problems(name: str, variables: Mapping[str, object]) -> list[str]:
    """What is wrong with one host's variables (empty when it can be used)."""
    problems: list[str] = []
    connection = str(variables.get("ansible_connection", "ssh"))
    if connection != "local" and connection not in _SSH_CONNECTIONS:
        problems.append(f"{name}: ansible_connection={connection!r} is neither local nor ssh")
    port = variables.get("ansible_port", 22)
    if isinstance(port, bool) or not str(port).isdigit() or not 1 <= int(str(port)) <= 65535:
        problems.append(f"{name}: ansible_port={port!r} is not a TCP port")
    listed = variables.get("gpuledger_listed", True)
    if _as_bool(listed) is None:
        problems.append(f"{name}: gpuledger_listed={listed!r} is not a boolean")
    for key in ("ansible_host", "gpuledger_ssh_user"):
        value = variables.get(key)
        if value is not None and (not str(value).strip() or any(c.isspace() for c in str(value))):
            problems.append(f"{name}: {key}={value!r} is empty or contains whitespace")
    return problems


def node_from_vars(name: str, groups: tuple[str, ...], variables: Mapping[str, object]) -> Node:
    """Build a ``Node`` from one host's resolved variables (call ``host_problems`` first)."""
    local = str(variables.get("ansible_connection", "ssh")) == "local"
    ansible_user = variables.get("ansible_user")
    return Node(
        name=name,
        address=str(variables.get("ansible_host", name)),
        port=int(str(variables.get("ansible_port", 22))),
        ssh_user=str(variables.get("gpuledger_ssh_user", "gpuledger")),
        local=local,
        ansible_user=None if ansible_user is None else str(ansible_user),
        groups=groups,
        region=str(variables.get("gpuledger_region", "")),
        listed=bool(_as_bool(variables.get("gpuledger_listed", True))),
        remarks=str(variables.get("gpuledger_remarks", "")),
        variables=MappingProxyType({k: v for k, v in variables.items() if k.startswith(VAR_PREFIX)}),
    )


_WANTED = ("ansible_host", "ansible_port", "ansible_user", "ansible_connection")


def load_inventory(source: Path | str) -> tuple[Node, ...]:
    """Every host of the inventory at ``source`` (file or directory), sorted by name.

    Raises ``InventoryError`` listing every problem when the source is missing, cannot be parsed, has no
    hosts, or has hosts whose variables are unusable: a half-read inventory would silently stop charging.
    """
    # ansible-core is heavy to import (~0.8 s); only the commands that read an inventory pay for it.
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.vars.manager import VariableManager

    path = Path(source).resolve()
    if not path.exists():
        raise InventoryError(path, ["no such file or directory"])
    loader = DataLoader()
    manager = InventoryManager(loader=loader, sources=[str(path)], parse=False)
    if not manager.parse_source(str(path)):
        raise InventoryError(path, ["not a parsable Ansible inventory (INI, YAML or a directory of them)"])
    manager.reconcile_inventory()
    variable_manager = VariableManager(loader=loader, inventory=manager)
    nodes: list[Node] = []
    problems: list[str] = []
    for host in manager.get_hosts():
        raw = variable_manager.get_vars(host=host, include_hostvars=False)
        templar = Templar(loader=loader, variables=raw)
        try:
            resolved = {
                key: _plain(templar.template(value))
                for key, value in raw.items()
                if key in _WANTED or key.startswith(VAR_PREFIX)
            }
        except AnsibleError as exc:
            problems.append(f"{host.name}: {exc.message}")
            continue
        host_errors = host_problems(host.name, resolved)
        if host_errors:
            problems.extend(host_errors)
            continue
        groups = tuple(sorted(g.name for g in host.get_groups() if g.name not in ("all", "ungrouped")))
        nodes.append(node_from_vars(host.name, groups, resolved))
    if problems:
        raise InventoryError(path, problems)
    if not nodes:
        raise InventoryError(path, ["no hosts"])
    return tuple(sorted(nodes, key=lambda n: n.name))
