"""The sample against fixture /proc trees and the NVML fake, validated against docs/sample-schema.json."""

import json
import subprocess
import sys

import jsonschema
import pynvml
import pytest

from probe import config as node_config
from probe import nvml
from probe import sample as sampler
from probe.accounts import Accounts
from probe.degraded import Degradations
from tests.probe import nvml_fake, proctree
from tests.probe.support import FIXTURES, ROOT

SCHEMA = json.loads((ROOT / "docs" / "sample-schema.json").read_text())
PROCESSES = [
    {"pid": 1, "comm": "init", "uid": 0, "start_ticks": 5},
    {"pid": 2, "comm": "kthreadd", "uid": 0, "kthread": True},
    {"pid": 900, "comm": "sshd", "uid": 0, "utime": 50, "stime": 20, "start_ticks": 800},
    {"pid": 950, "comm": "postgres", "uid": 101, "utime": 5000, "start_ticks": 900},
    {"pid": 4242, "comm": "python (train) )x", "uid": 1001, "utime": 123456, "stime": 789, "start_ticks": 424200,
     "rss_pages": 2560, "cmdline": ["python", "train.py", "--token=secret"]},
    {"pid": 4343, "comm": "hidden", "uid": 2999999, "utime": 10, "start_ticks": 434300, "nondumpable": True},
    {"pid": 4444, "comm": "defunct", "uid": 2999999, "state": "Z", "start_ticks": 434400},
]


def validate(document):
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(document)


def _config(tmp_path, **values):
    values.setdefault("proc_root", str(tmp_path / "proc"))
    values.setdefault("cgroup_root", str(tmp_path / "cgroup"))
    values.setdefault("uid_min", 1000)
    return node_config.from_mapping(values)


def _accounts(tmp_path):
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0::/root:/bin/bash\npostgres:x:101:104::/:/bin/false\nalice:x:1001:1001::/:/bin/bash\n")
    return Accounts(str(passwd))


@pytest.fixture
def tree(tmp_path):
    proctree.build(str(tmp_path / "proc"), PROCESSES, nvidia_driver=True)
    return tmp_path


def test_the_schema_itself_is_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_user_processes_identity_and_counters(tree):
    document = sampler.build(_config(tree), lambda *_: None, _accounts(tree))
    validate(document)
    assert document["node"]["boot_id"] == proctree.BOOT_ID
    assert document["node"]["boot_time"] == proctree.BTIME
    rows = {row["pid"]: row for row in document["processes"]}
    assert sorted(rows) == [4242, 4343, 4444]  # kernel threads, root and system accounts are left out
    alice = rows[4242]
    assert alice["name"] == "python (train) )x"
    assert (alice["uid"], alice["user"], alice["start_ticks"]) == (1001, "alice", 424200)
    assert (alice["cpu_user_ticks"], alice["cpu_system_ticks"], alice["rss_bytes"]) == (123456, 789, 2560 * 4096)
    tck = document["node"]["clock_ticks_per_second"]
    assert alice["create_time_ms"] == proctree.BTIME * 1000 + 424200 * 1000 // tck
    assert "cmdline" not in alice  # command lines may carry secrets: off unless configured
    assert rows[4343]["uid"] == 2999999 and rows[4343]["user"] is None  # non-dumpable still counted; no name known
    assert document["process_count"] == 6
    cpu = document["hardware"]["cpu"]
    assert (cpu["model"], cpu["physical_cores"], cpu["sockets"]) == ("AMD EPYC 7763 64-Core Processor", 4, 2)
    assert document["hardware"]["memory"]["total_bytes"] == 263855560 * 1024


def test_sampling_twice_gives_the_same_totals(tree):
    config = _config(tree)
    first = sampler.build(config, lambda *_: None, _accounts(tree))
    second = sampler.build(config, lambda *_: None, _accounts(tree))
    assert first["processes"] == second["processes"]
    assert first["user_cpu"] == second["user_cpu"]


def test_command_lines_when_configured(tree):
    document = sampler.build(_config(tree, collect_cmdline=True), lambda *_: None, _accounts(tree))
    validate(document)
    assert {row["pid"]: row["cmdline"] for row in document["processes"]}[4242] == "python train.py --token=secret"


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_per_user_cgroup_counters(tree, version):
    cgroup = tree / "cgroup"
    if version == "v2":
        proctree.write(str(cgroup), "cgroup.controllers", "cpu io memory pids\n")
        proctree.write(str(cgroup), "user.slice/user-1001.slice/cpu.stat", "usage_usec 7250001\nuser_usec 7000000\n")
        proctree.write(str(cgroup), "user.slice/user-1002.slice/cpu.stat", "usage_usec 0\n")
        expected = {1001: 7250001000, 1002: 0}
    else:
        proctree.write(str(cgroup), "cpuacct/user.slice/user-1001.slice/cpuacct.usage", "7250001234\n")
        expected = {1001: 7250001234}
    proctree.write(str(cgroup), "user.slice/not-a-user.slice/cpu.stat", "usage_usec 1\n")
    document = sampler.build(_config(tree), lambda *_: None, _accounts(tree))
    validate(document)
    assert {row["uid"]: row["usage_ns"] for row in document["user_cpu"]} == expected
    assert {row["source"] for row in document["user_cpu"]} == {"cgroup-" + version}


def test_missing_cgroup_counters_are_a_degradation_not_a_failure(tree):
    document = sampler.build(_config(tree), lambda *_: None, _accounts(tree))
    assert {"user_cpu"} <= {entry["source"] for entry in document["degraded"]}


def test_gpus_from_the_nvml_fake_with_mig_and_accounting(tree, fake_nvml):
    fake = fake_nvml("a100_mig")
    document = sampler.build(_config(tree), nvml_fake.loader, _accounts(tree))
    validate(document)
    assert document["hardware"]["nvidia"] == {
        "driver_version": "550.54.15",
        "cuda_driver_version": "12.4",
        "nvml_version": "12.550.54.15",
    }
    mig_gpu, plain_gpu = document["gpus"]
    assert mig_gpu["mig_mode"] == "enabled" and plain_gpu["mig_mode"] == "disabled"
    assert [(m["slice_count"], m["total_slices"]) for m in mig_gpu["mig_devices"]] == [(3, 7), (2, 7)]
    assert mig_gpu["memory_used_bytes"] == 25769803776 and mig_gpu["ecc_volatile_corrected"] == 2
    by_device = {(p["device_uuid"], p["pid"]): p for p in document["gpu_processes"]}
    mig_a = mig_gpu["mig_devices"][0]["uuid"]
    assert by_device[(mig_a, 4242)]["used_memory_bytes"] == 10737418240
    assert (by_device[(mig_a, 4242)]["uid"], by_device[(mig_a, 4242)]["start_ticks"]) == (1001, 424200)
    assert by_device[(mig_gpu["mig_devices"][1]["uuid"], 4343)]["uid"] == 2999999
    assert by_device[(plain_gpu["uuid"], 4242)]["gpu_uuid"] == plain_gpu["uuid"]
    ended = [row for row in document["gpu_accounting"] if not row["is_running"]]
    assert ended == [
        {"gpu_uuid": plain_gpu["uuid"], "pid": 3999, "start_time_us": 1763999000000000, "gpu_time_ms": 754000,
         "gpu_utilization_percent": 40, "memory_utilization_percent": 10, "max_memory_bytes": 2147483648,
         "is_running": False}
    ]
    assert fake.init_count == 0  # nvmlShutdown balanced nvmlInit
    assert [d["source"] for d in document["degraded"]] == ["user_cpu"]


def test_consumer_gpu_unsupported_fields_and_a_lost_gpu_degrade(tree, fake_nvml):
    fake_nvml("geforce")
    document = sampler.build(_config(tree), nvml_fake.loader, _accounts(tree))
    validate(document)
    (gpu,) = document["gpus"]
    assert (gpu["power_mw"], gpu["ecc_volatile_corrected"], gpu["mig_mode"], gpu["accounting_mode"]) == (None,) * 4
    assert document["gpu_processes"][0]["used_memory_bytes"] is None  # NVML_VALUE_NOT_AVAILABLE
    reasons = {(d["source"], d["reason"]) for d in document["degraded"]}
    assert ("gpu[0].power", "nvml_not_supported") in reasons
    assert ("gpu[1]", "nvml_gpu_is_lost") in reasons


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [("library_not_found", "nvml_library_not_found"), ("driver_not_loaded", "nvml_driver_not_loaded")],
)
def test_nvml_init_failure_still_samples(tree, fake_nvml, fixture, reason):
    fake_nvml(fixture)
    document = sampler.build(_config(tree), nvml_fake.loader, _accounts(tree))
    validate(document)
    assert document["gpus"] == [] and document["hardware"]["nvidia"] is None
    assert {"source": "nvml", "reason": reason, "detail": str(pynvml.NVMLError(getattr(pynvml, reason.replace(
        "nvml_", "NVML_ERROR_").upper())))} in document["degraded"]
    assert len(document["processes"]) == 3


def test_the_real_library_on_this_gpu_less_machine_reports_library_not_found():
    degraded = Degradations()
    result = nvml.read(pynvml, degraded)  # the real pynvml: no libnvidia-ml.so.1 here
    assert result["gpus"] == []
    assert degraded.as_list()[0]["reason"] in ("nvml_library_not_found", "nvml_driver_not_loaded")


def test_presence_check(tmp_path):
    proc, dev = str(tmp_path / "proc"), tmp_path / "dev"
    proctree.build(proc, [])
    dev.mkdir()
    assert not nvml.nvidia_present(proc, str(dev))
    (dev / "nvidiactl").touch()
    assert nvml.nvidia_present(proc, str(dev))
    proctree.build(str(tmp_path / "proc2"), [], nvidia_driver=True)
    assert nvml.nvidia_present(str(tmp_path / "proc2"), str(tmp_path / "no-dev"))


@pytest.mark.skipif(nvml.nvidia_present("/proc"), reason="this machine has NVIDIA devices")
def test_without_devices_pynvml_is_never_imported():
    code = (
        "import sys; from probe import nvml; from probe.degraded import Degradations; d = Degradations(); "
        "print(nvml.load_pynvml('/proc', d), 'pynvml' in sys.modules, d.as_list()[0]['reason'])"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["None", "False", "no_nvidia_device"]


def test_the_fake_keeps_pynvml_errors_and_structures(fake_nvml):
    fake_nvml("a100_mig")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        pynvml.nvmlDeviceGetCount()
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    assert isinstance(pynvml.nvmlDeviceGetMemoryInfo(handle), pynvml.c_nvmlMemory_t)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        pynvml.nvmlDeviceGetHandleByIndex(2)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        pynvml.nvmlDeviceGetAccountingPids(handle)
    with pytest.raises(pynvml.NVMLError_NotFound):
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, 1)
    pynvml.nvmlShutdown()


def test_fixture_files_are_valid_json():
    for path in (FIXTURES / "nvml").glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path


def test_the_drop_box_and_holding_place_are_counted_for_the_controller(tree):
    """``gpu_requests_waiting``: names in the box and the holding place, counted, never opened; 0 where neither
    exists (the controller skips that node's ``gpu-requests``), null where one cannot be listed (it reads)."""
    box, held = tree / "box", tree / "held"
    config = _config(tree, gpu_request_dir=str(box), gpu_request_hold_dir=str(held))
    assert sampler.build(config, lambda *_: None, _accounts(tree))["gpu_requests_waiting"] == 0
    box.mkdir()
    held.mkdir()
    (box / "a").write_text("{}")
    (box / "b").symlink_to("/etc/shadow")   # refused by gpu-requests, but something for it to report
    (held / "0000000001-0123456789abcdef").write_text("{}")
    document = sampler.build(config, lambda *_: None, _accounts(tree))
    validate(document)
    assert document["gpu_requests_waiting"] == 3
    blocked = _config(tree, gpu_request_dir=str(box / "a"), gpu_request_hold_dir=str(held))
    unknown = sampler.build(blocked, lambda *_: None, _accounts(tree))
    validate(unknown)
    assert unknown["gpu_requests_waiting"] is None
