"""A faithful fake of the pynvml functions the probe calls, driven by a fixture JSON file.

It replaces functions on the real ``pynvml`` module, so callers keep pynvml's own constants, structure
classes (``c_nvmlMemory_t``, ``c_nvmlUtilization_t``, ``c_nvmlAccountingStats_t``,
``c_nvmlDeviceAttributes``, the friendly process objects) and ``NVMLError`` subclasses with their real
codes. Any value in the fixture may be an error name such as ``"NVML_ERROR_NOT_SUPPORTED"``: the
function that reads it raises that error instead, the way the library does.

Fixture shape (every device key is optional except ``uuid``)::

    {"init_error": null, "driver_version": "550.54.15", "cuda_driver_version": 12040,
     "nvml_version": "12.550.54.15",
     "devices": [{"uuid": "GPU-...", "name": "NVIDIA A100-SXM4-80GB",
                  "memory": {"total": 1, "free": 0, "used": 1}, "utilization": {"gpu": 50, "memory": 20},
                  "temperature": 60, "power_mw": 250000, "ecc": {"corrected": 0, "uncorrected": 0},
                  "mig_mode": [1, 1], "max_mig_device_count": 7, "accounting_mode": 1,
                  "compute_processes": [{"pid": 1, "usedGpuMemory": 1, "gpuInstanceId": 1, "computeInstanceId": 0}],
                  "graphics_processes": [], "accounting": [{"pid": 1, "gpuUtilization": 1, ...}],
                  "mig_devices": [{"slot": 0, "uuid": "MIG-...", "gpu_instance_id": 1, "compute_instance_id": 0,
                                   "attributes": {"gpuInstanceSliceCount": 3, ...}, "memory": {...}}]}]}

Use ``install(fixture, monkeypatch.setattr)`` in tests, or ``install(path)`` in a subprocess
(``tests/probe/fake_node.py`` does that for whole simulated nodes).
"""

import json

import pynvml

NO_MIG_ID = 0xFFFFFFFF


def _error(value):
    return isinstance(value, str) and value.startswith("NVML_ERROR_")


def _raise(name):
    raise pynvml.NVMLError(getattr(pynvml, name))


def _check(value):
    """Return ``value`` or raise the NVML error it names."""
    if _error(value):
        _raise(value)
    return value


def _structure(cls, values):
    values = _check(values)
    instance = cls()
    for name, _ in cls._fields_:
        if name in values:
            setattr(instance, name, values[name])
    return instance


class _Handle:
    """Stands in for the opaque ``c_nvmlDevice_t`` pointer: callers only pass it back to NVML."""

    def __init__(self, device, parent=None):
        self.device = device
        self.parent = parent


class FakeNvml:
    """The simulated library state: the fixture plus the init reference count."""

    def __init__(self, fixture):
        self.fixture = fixture
        self.init_count = 0
        self.calls = []

    # -- library lifetime -------------------------------------------------------------------------------------
    def _ready(self, name):
        self.calls.append(name)
        if self.init_count <= 0:
            _raise("NVML_ERROR_UNINITIALIZED")

    def nvmlInit(self):
        self.calls.append("nvmlInit")
        _check(self.fixture.get("init_error"))
        self.init_count += 1

    def nvmlShutdown(self):
        self._ready("nvmlShutdown")
        self.init_count -= 1

    # -- system -----------------------------------------------------------------------------------------------
    def nvmlSystemGetDriverVersion(self):
        self._ready("nvmlSystemGetDriverVersion")
        return _check(self.fixture.get("driver_version", "NVML_ERROR_NOT_SUPPORTED"))

    def nvmlSystemGetCudaDriverVersion(self):
        self._ready("nvmlSystemGetCudaDriverVersion")
        return _check(self.fixture.get("cuda_driver_version", "NVML_ERROR_NOT_SUPPORTED"))

    def nvmlSystemGetNVMLVersion(self):
        self._ready("nvmlSystemGetNVMLVersion")
        return _check(self.fixture.get("nvml_version", "NVML_ERROR_NOT_SUPPORTED"))

    # -- devices ----------------------------------------------------------------------------------------------
    def _devices(self):
        return self.fixture.get("devices", [])

    def nvmlDeviceGetCount(self):
        self._ready("nvmlDeviceGetCount")
        return len(self._devices())

    def nvmlDeviceGetHandleByIndex(self, index):
        self._ready("nvmlDeviceGetHandleByIndex")
        devices = self._devices()
        if not 0 <= index < len(devices):
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        _check(devices[index].get("handle_error"))
        return _Handle(devices[index])

    def _field(self, name, handle, key, default="NVML_ERROR_NOT_SUPPORTED"):
        self._ready(name)
        if not isinstance(handle, _Handle):
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        return _check(handle.device.get(key, default))

    def nvmlDeviceGetUUID(self, handle):
        return self._field("nvmlDeviceGetUUID", handle, "uuid")

    def nvmlDeviceGetName(self, handle):
        return self._field("nvmlDeviceGetName", handle, "name")

    def nvmlDeviceGetMemoryInfo(self, handle, version=None):
        return _structure(pynvml.c_nvmlMemory_t, self._field("nvmlDeviceGetMemoryInfo", handle, "memory"))

    def nvmlDeviceGetUtilizationRates(self, handle):
        values = self._field("nvmlDeviceGetUtilizationRates", handle, "utilization")
        return _structure(pynvml.c_nvmlUtilization_t, values)

    def nvmlDeviceGetTemperature(self, handle, sensor):
        value = self._field("nvmlDeviceGetTemperature", handle, "temperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        return value

    def nvmlDeviceGetPowerUsage(self, handle):
        return self._field("nvmlDeviceGetPowerUsage", handle, "power_mw")

    def nvmlDeviceGetTotalEccErrors(self, handle, errorType, counterType):
        ecc = self._field("nvmlDeviceGetTotalEccErrors", handle, "ecc")
        if counterType not in (pynvml.NVML_VOLATILE_ECC, pynvml.NVML_AGGREGATE_ECC):
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        key = {
            pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: "corrected",
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: "uncorrected",
        }
        if errorType not in key:
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        return _check(ecc[key[errorType]])

    def nvmlDeviceGetMigMode(self, handle):
        return list(self._field("nvmlDeviceGetMigMode", handle, "mig_mode"))

    def nvmlDeviceGetAccountingMode(self, handle):
        return self._field("nvmlDeviceGetAccountingMode", handle, "accounting_mode", pynvml.NVML_FEATURE_DISABLED)

    def _accounting_on(self, name, handle):
        if self._field(name, handle, "accounting_mode", pynvml.NVML_FEATURE_DISABLED) != pynvml.NVML_FEATURE_ENABLED:
            _raise("NVML_ERROR_NOT_SUPPORTED")  # what NVML returns while accounting mode is disabled

    def nvmlDeviceGetAccountingPids(self, handle):
        self._accounting_on("nvmlDeviceGetAccountingPids", handle)
        return [int(entry["pid"]) for entry in _check(handle.device.get("accounting", []))]

    def nvmlDeviceGetAccountingStats(self, handle, pid):
        self._accounting_on("nvmlDeviceGetAccountingStats", handle)
        for entry in handle.device.get("accounting", []):
            if entry["pid"] == pid:
                stats = _structure(pynvml.c_nvmlAccountingStats_t, entry)
                if stats.maxMemoryUsage == pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
                    stats.maxMemoryUsage = None
                return stats
        _raise("NVML_ERROR_NOT_FOUND")

    def _processes(self, name, handle, key):
        procs = []
        for entry in self._field(name, handle, key, []):
            values = {"gpuInstanceId": NO_MIG_ID, "computeInstanceId": NO_MIG_ID}
            values.update(entry)
            obj = pynvml.nvmlStructToFriendlyObject(_structure(pynvml.c_nvmlProcessInfo_v2_t, values))
            if obj.usedGpuMemory == pynvml.NVML_VALUE_NOT_AVAILABLE_ulonglong.value:
                obj.usedGpuMemory = None
            procs.append(obj)
        return procs

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return self._processes("nvmlDeviceGetComputeRunningProcesses", handle, "compute_processes")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle):
        return self._processes("nvmlDeviceGetGraphicsRunningProcesses", handle, "graphics_processes")

    # -- MIG --------------------------------------------------------------------------------------------------
    def nvmlDeviceGetMaxMigDeviceCount(self, handle):
        return self._field("nvmlDeviceGetMaxMigDeviceCount", handle, "max_mig_device_count", 0)

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):
        mode = self._field("nvmlDeviceGetMigDeviceHandleByIndex", handle, "mig_mode")
        if not mode[0]:
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        for mig in handle.device.get("mig_devices", []):
            if mig["slot"] == index:
                return _Handle(mig, parent=handle)
        _raise("NVML_ERROR_NOT_FOUND")

    def _mig_field(self, name, handle, key):
        self._ready(name)
        if not isinstance(handle, _Handle) or handle.parent is None:
            _raise("NVML_ERROR_INVALID_ARGUMENT")
        return _check(handle.device[key])

    def nvmlDeviceGetGpuInstanceId(self, handle):
        return self._mig_field("nvmlDeviceGetGpuInstanceId", handle, "gpu_instance_id")

    def nvmlDeviceGetComputeInstanceId(self, handle):
        return self._mig_field("nvmlDeviceGetComputeInstanceId", handle, "compute_instance_id")

    def nvmlDeviceGetAttributes(self, handle):
        values = self._mig_field("nvmlDeviceGetAttributes", handle, "attributes")
        return _structure(pynvml.c_nvmlDeviceAttributes, values)


FUNCTIONS = tuple(name for name in vars(FakeNvml) if name.startswith("nvml"))


def load_fixture(fixture):
    """A fixture dict from a dict or a path to a JSON file."""
    if isinstance(fixture, dict):
        return fixture
    with open(fixture, encoding="utf-8") as handle:
        return json.load(handle)


def install(fixture, set_attribute=setattr):
    """Replace pynvml's functions with the fake's; returns the ``FakeNvml`` (its ``calls`` list records use)."""
    fake = FakeNvml(load_fixture(fixture))
    for name in FUNCTIONS:
        if not hasattr(pynvml, name):
            raise AttributeError(f"pynvml has no {name}: the fake would not be faithful")
        set_attribute(pynvml, name, getattr(fake, name))
    return fake


def loader(proc_root, degraded):
    """A ``nvml_loader`` for ``probe.node.main``: this simulated node has NVIDIA devices."""
    return pynvml
