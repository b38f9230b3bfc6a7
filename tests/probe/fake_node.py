"""A simulated GPU node: the real node command with the NVML fake installed.

    GPULEDGER_NVML_FAKE=tests/probe/fixtures/nvml/a100_mig.json python -m tests.probe.fake_node sample

Test-only: the environment variable is read here, never by ``probe``, so no production path reachable
over SSH can be switched to fake GPUs. Usable as an SSH forced command for simulated nodes too.
"""

import os
import sys

from probe.node import main
from tests.probe import nvml_fake


def run():
    nvml_fake.install(os.environ["GPULEDGER_NVML_FAKE"])
    return main(nvml_loader=nvml_fake.loader)


if __name__ == "__main__":
    sys.exit(run())
