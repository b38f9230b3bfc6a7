"""The node config: defaults for a missing file or key, strict types."""

import pytest

from probe import config
from probe.errors import ConfigError


def test_missing_file_means_defaults(tmp_path):
    loaded = config.load(str(tmp_path / "absent.json"))
    assert loaded == config.from_mapping({})
    assert loaded.status_dir == "/run/gpuledger/status"
    assert (loaded.kill_grace_seconds, loaded.collect_cmdline) == (30, False)
    assert (loaded.cgroup_root, loaded.proc_root, loaded.uid_min) == ("/sys/fs/cgroup", "/proc", None)


def test_values_are_validated(tmp_path):
    path = tmp_path / "node.json"
    path.write_text('{"exempt_users": ["a"], "uid_min": 1500, "cgroup_root": "/x/", "kill_grace_seconds": 0}')
    loaded = config.load(str(path))
    assert (loaded.exempt_users, loaded.uid_min) == (("a",), 1500)
    assert (loaded.cgroup_root, loaded.kill_grace_seconds) == ("/x", 0)
    for bad in ({"uid_min": True}, {"collect_cmdline": "yes"}, {"kill_grace_seconds": 3601}, {"status_dir": ""}):
        with pytest.raises(ConfigError) as caught:
            config.from_mapping(bad)
        assert caught.value.reason == next(iter(bad))
