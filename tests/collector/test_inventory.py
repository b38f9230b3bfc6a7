"""The inventory reader against real INI/YAML files and directories, parsed by ansible-core itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.errors import InventoryError
from collector.nodes.inventory import host_problems, load_inventory

INI = """\
[gpu]
gpu01 ansible_host=10.0.0.1 ansible_port=2222 ansible_user=ops gpuledger_region=east
gpu02 ansible_host="{{ subnet }}.2" gpuledger_listed=false

[gpu:vars]
subnet=10.0.0
gpuledger_remarks="rack 3"

[control]
ctl ansible_connection=local
"""

YAML = """\
all:
  children:
    gpu:
      hosts:
        gpu01:
          ansible_host: 10.0.0.1
          gpuledger_ssh_user: meter
          gpuledger_price_class: {a100: 2}
      vars:
        gpuledger_region: west
"""


def test_ini_hosts_groups_and_variables(tmp_path: Path) -> None:
    source = tmp_path / "hosts.ini"
    source.write_text(INI)
    nodes = {n.name: n for n in load_inventory(source)}
    assert sorted(nodes) == ["ctl", "gpu01", "gpu02"]
    gpu01 = nodes["gpu01"]
    assert (gpu01.address, gpu01.port, gpu01.ansible_user, gpu01.ssh_user) == ("10.0.0.1", 2222, "ops", "gpuledger")
    assert (gpu01.region, gpu01.remarks, gpu01.groups) == ("east", "rack 3", ("gpu",))
    assert gpu01.listed and not gpu01.local
    assert nodes["gpu02"].address == "10.0.0.2"  # Jinja resolved from a group variable, as ansible would
    assert nodes["gpu02"].listed is False
    assert nodes["ctl"].local and nodes["ctl"].address == "ctl" and nodes["ctl"].port == 22
    assert dict(gpu01.variables) == {"gpuledger_region": "east", "gpuledger_remarks": "rack 3"}
    assert type(gpu01.variables["gpuledger_region"]) is str  # plain, not ansible's tagged types


def test_yaml_inventory_with_group_vars_directory(tmp_path: Path) -> None:
    (tmp_path / "inv").mkdir()
    (tmp_path / "inv" / "hosts.yml").write_text(YAML)
    (tmp_path / "inv" / "group_vars").mkdir()
    (tmp_path / "inv" / "group_vars" / "gpu.yml").write_text("gpuledger_remarks: from group_vars\n")
    (node,) = load_inventory(tmp_path / "inv")
    assert (node.name, node.ssh_user, node.region, node.remarks) == ("gpu01", "meter", "west", "from group_vars")
    assert dict(node.variables["gpuledger_price_class"]) == {"a100": 2}  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[gpu\nbroken line=\n", "not a parsable"),
        ("[gpu]\n", "no hosts"),
        ("[gpu]\na ansible_port=notaport\n", "ansible_port='notaport'"),
        ("[gpu]\na ansible_connection=winrm\n", "neither local nor ssh"),
        ("[gpu]\na gpuledger_listed=maybe\nb ansible_port=0\n", "gpuledger_listed='maybe'"),
    ],
)
def test_bad_inventories_fail_naming_the_problem(tmp_path: Path, content: str, needle: str) -> None:
    source = tmp_path / "hosts.ini"
    source.write_text(content)
    with pytest.raises(InventoryError) as caught:
        load_inventory(source)
    assert needle in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    problems = host_problems("a", {"ansible_port": 0, "gpuledger_listed": "maybe", "ansible_host": "a b"})
    assert len(problems) == 3


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="no such file"):
        load_inventory(tmp_path / "nope.ini")
