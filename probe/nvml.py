"""The GPU part of a sample, read through pynvml (nvidia-ml-py).

pynvml is imported only on nodes with NVIDIA devices: the import alone costs ~23 ms, about half the
probe's CPU budget. Every NVML error becomes a degradation entry; none fails the sample.
"""

import os


def nvidia_present(proc_root, dev_dir="/dev"):
    """True when the NVIDIA driver is loaded (``/proc/driver/nvidia``) or device nodes exist."""
    if os.path.isdir(proc_root + "/driver/nvidia"):
        return True
    try:
        return any(name.startswith("nvidia") for name in os.listdir(dev_dir))
    except OSError:
        return False


def load_pynvml(proc_root, degraded):
    """The production loader: the pynvml module, or None with a degradation saying why."""
    if not nvidia_present(proc_root):
        degraded.add("nvml", "no_nvidia_device", "no /dev/nvidia* and no %s/driver/nvidia" % proc_root)
        return None
    try:
        import pynvml
    except ImportError as error:
        degraded.add("nvml", "pynvml_missing", str(error))
        return None
    return pynvml


def error_reason(nvml, error):
    """``nvml_not_supported`` etc. from an NVMLError's code, named after pynvml's own constant."""
    code = getattr(error, "value", None)
    for name in dir(nvml):
        if name.startswith("NVML_ERROR_") and getattr(nvml, name) == code:
            return "nvml_" + name[len("NVML_ERROR_") :].lower()
    return "nvml_error_%s" % code


class _Reader:
    def __init__(self, nvml, degraded):
        self.nvml = nvml
        self.degraded = degraded

    def optional(self, source, function, *args):
        """``function(*args)``, or None with a degradation when NVML reports an error."""
        try:
            return function(*args)
        except self.nvml.NVMLError as error:
            self.degraded.add(source, error_reason(self.nvml, error), str(error))
            return None

    def driver(self):
        nvml = self.nvml
        cuda = self.optional("nvml.cuda_version", nvml.nvmlSystemGetCudaDriverVersion)
        return {
            "driver_version": self.optional("nvml.driver_version", nvml.nvmlSystemGetDriverVersion),
            "cuda_driver_version": None if cuda is None else "%d.%d" % (cuda // 1000, cuda % 1000 // 10),
            "nvml_version": self.optional("nvml.nvml_version", nvml.nvmlSystemGetNVMLVersion),
        }

    def gpu(self, index, handle):
        nvml = self.nvml
        where = "gpu[%d]" % index
        memory = self.optional(where + ".memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        utilization = self.optional(where + ".utilization", nvml.nvmlDeviceGetUtilizationRates, handle)
        mig = self.optional(where + ".mig_mode", nvml.nvmlDeviceGetMigMode, handle)
        accounting = self.optional(where + ".accounting_mode", nvml.nvmlDeviceGetAccountingMode, handle)
        return {
            "index": index,
            "uuid": nvml.nvmlDeviceGetUUID(handle),
            "name": self.optional(where + ".name", nvml.nvmlDeviceGetName, handle),
            "memory_total_bytes": None if memory is None else memory.total,
            "memory_used_bytes": None if memory is None else memory.used,
            "mig_mode": None if mig is None else ("enabled" if mig[0] == nvml.NVML_DEVICE_MIG_ENABLE else "disabled"),
            "accounting_mode": None if accounting is None else accounting == nvml.NVML_FEATURE_ENABLED,
            "utilization_gpu_percent": None if utilization is None else utilization.gpu,
            "utilization_memory_percent": None if utilization is None else utilization.memory,
            "temperature_c": self.optional(
                where + ".temperature", nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU
            ),
            "power_mw": self.optional(where + ".power", nvml.nvmlDeviceGetPowerUsage, handle),
            "ecc_volatile_corrected": self.optional(
                where + ".ecc_corrected",
                nvml.nvmlDeviceGetTotalEccErrors,
                handle,
                nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                nvml.NVML_VOLATILE_ECC,
            ),
            "ecc_volatile_uncorrected": self.optional(
                where + ".ecc_uncorrected",
                nvml.nvmlDeviceGetTotalEccErrors,
                handle,
                nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                nvml.NVML_VOLATILE_ECC,
            ),
            "mig_devices": self.mig_devices(where, handle) if mig is not None and mig[0] else [],
        }

    def mig_devices(self, where, handle):
        nvml = self.nvml
        total = self.optional(where + ".mig_count", nvml.nvmlDeviceGetMaxMigDeviceCount, handle)
        devices = []
        for slot in range(total or 0):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError_NotFound:
                continue  # an empty slot, not an error
            except nvml.NVMLError as error:
                self.degraded.add("%s.mig[%d]" % (where, slot), error_reason(nvml, error), str(error))
                continue
            mig_where = "%s.mig[%d]" % (where, slot)
            attributes = self.optional(mig_where + ".attributes", nvml.nvmlDeviceGetAttributes, mig)
            memory = self.optional(mig_where + ".memory", nvml.nvmlDeviceGetMemoryInfo, mig)
            devices.append(
                {
                    "uuid": nvml.nvmlDeviceGetUUID(mig),
                    "gpu_instance_id": nvml.nvmlDeviceGetGpuInstanceId(mig),
                    "compute_instance_id": nvml.nvmlDeviceGetComputeInstanceId(mig),
                    "slice_count": None if attributes is None else attributes.gpuInstanceSliceCount,
                    "total_slices": total,
                    "memory_total_bytes": None if memory is None else memory.total,
                    "memory_used_bytes": None if memory is None else memory.used,
                }
            )
        return devices

    def processes(self, gpu, handle):
        nvml = self.nvml
        # Processes outside MIG carry 0xFFFFFFFF ids, which match no MIG device: they map to the GPU itself.
        by_instance = {(m["gpu_instance_id"], m["compute_instance_id"]): m["uuid"] for m in gpu["mig_devices"]}
        rows = []
        for kind, function in (
            ("compute", nvml.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", nvml.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            for info in self.optional("gpu[%d].%s_processes" % (gpu["index"], kind), function, handle) or []:
                instance = (info.gpuInstanceId, info.computeInstanceId)
                rows.append(
                    {
                        "gpu_uuid": gpu["uuid"],
                        "device_uuid": by_instance.get(instance, gpu["uuid"]),
                        "pid": info.pid,
                        "type": kind,
                        "used_memory_bytes": info.usedGpuMemory,
                    }
                )
        return rows

    def accounting(self, gpu, handle):
        nvml = self.nvml
        where = "gpu[%d].accounting" % gpu["index"]
        rows = []
        for pid in self.optional(where, nvml.nvmlDeviceGetAccountingPids, handle) or []:
            stats = self.optional("%s[%d]" % (where, pid), nvml.nvmlDeviceGetAccountingStats, handle, pid)
            if stats is None:
                continue
            rows.append(
                {
                    "gpu_uuid": gpu["uuid"],
                    "pid": pid,
                    "start_time_us": stats.startTime,
                    "gpu_time_ms": stats.time,
                    "gpu_utilization_percent": stats.gpuUtilization,
                    "memory_utilization_percent": stats.memoryUtilization,
                    "max_memory_bytes": stats.maxMemoryUsage,
                    "is_running": bool(stats.isRunning),
                }
            )
        return rows


def read(nvml, degraded):
    """``{"driver", "gpus", "processes", "accounting"}`` from an initialised-on-demand pynvml module."""
    result = {"driver": None, "gpus": [], "processes": [], "accounting": []}
    if nvml is None:
        return result
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        degraded.add("nvml", error_reason(nvml, error), str(error))
        return result
    reader = _Reader(nvml, degraded)
    try:
        result["driver"] = reader.driver()
        for index in range(reader.optional("nvml.device_count", nvml.nvmlDeviceGetCount) or 0):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                gpu = reader.gpu(index, handle)
            except nvml.NVMLError as error:
                degraded.add("gpu[%d]" % index, error_reason(nvml, error), str(error))
                continue
            result["gpus"].append(gpu)
            result["processes"].extend(reader.processes(gpu, handle))
            if gpu["accounting_mode"]:
                result["accounting"].extend(reader.accounting(gpu, handle))
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError as error:
            degraded.add("nvml.shutdown", error_reason(nvml, error), str(error))
    return result
