"""Probe benchmark: one `sample` as a whole process, on this machine with >= 500 extra processes.

    .venv/bin/python bench/probe.py                  # 500 sleepers, 30 runs per interpreter
    .venv/bin/python bench/probe.py --sleepers 2000 --runs 15

The probe is installed the way the node role installs it (a copy under <prefix>/lib, byte-compiled, the
`gpuledger-node` script run with `-I`), then run as a child process; wall time, CPU time (user+system
from wait4) and peak RSS come from the kernel's accounting of that child. For comparison the table
also times a naive psutil scan of the same processes (the approach the probe does not take). The
sleepers this benchmark starts are the only processes it kills.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_CPU_MS = 50.0
TARGET_RSS_MIB = 30.0
NOBODY = 65534
GNU_TIME = "/usr/bin/time"
NODE_SCRIPT = "#!{python} -I\nimport sys\nsys.path.insert(0, {lib!r})\nfrom probe.node import main\nsys.exit(main())\n"
PSUTIL_SCAN = (
    "import psutil,json\n"
    "rows=[(p.info['pid'],p.info['username'],p.info['create_time'],p.info['cpu_times'],p.info['memory_info'])"
    " for p in psutil.process_iter(['pid','username','create_time','cpu_times','memory_info'])]\n"
    "print(json.dumps(rows))\n"
)


def install(prefix: Path, python: str) -> Path:
    lib = prefix / "lib"
    shutil.copytree(ROOT / "probe", lib / "probe", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([python, "-m", "compileall", "-q", str(lib / "probe")], check=True)
    script = prefix / "bin" / "gpuledger-node"
    script.parent.mkdir(parents=True)
    script.write_text(NODE_SCRIPT.format(python=python, lib=str(lib)))
    script.chmod(0o755)
    return script


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, bytes]:
    """(wall ms, cpu ms, peak RSS MiB, stdout) of one child process.

    A child's ru_maxrss starts at the RSS of the process that forked it (the kernel carries the old mm's
    high-water mark across exec), and this benchmark is a large Python process. So the child is started
    by GNU time, a small process, whose %M is the child's own peak; CPU comes from wait4 on time and
    includes its ~1 ms, as the interpreter-floor rows show.
    """
    with tempfile.NamedTemporaryFile("r") as rss_file:
        started = time.perf_counter()
        child = subprocess.Popen(
            [GNU_TIME, "-f", "%M", "-o", rss_file.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        out = child.stdout.read() if child.stdout else b""
        _, status, usage = os.wait4(child.pid, 0)
        wall = (time.perf_counter() - started) * 1000
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{argv} exited {child.returncode}")
        peak_kib = int(rss_file.read().split()[-1])
    return wall, (usage.ru_utime + usage.ru_stime) * 1000, peak_kib / 1024, out


def p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.9 * len(values))) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sleepers", type=int, default=500)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter(s) to run the probe with (default: /usr/bin/python3 if present, and this one)",
    )
    parser.add_argument("--root-sleepers", action="store_true", help="run the sleepers as root instead of nobody")
    args = parser.parse_args()
    pythons = args.python or [p for p in ("/usr/bin/python3", sys.executable) if os.path.exists(p)]
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}
    # As root, the sleepers run as an unprivileged user, like the user jobs a node mostly runs; root-owned
    # processes cost one more /proc read each (the non-dumpable check), reported with --root-sleepers.
    owner = None if args.root_sleepers or os.geteuid() != 0 else NOBODY
    sleepers = [subprocess.Popen(["sleep", "3600"], user=owner) for _ in range(args.sleepers)]
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="gpuledger-bench-") as tmp:
            for python in pythons:
                floor = [measure([python, "-I", "-c", "pass"], env) for _ in range(args.runs)]
                rows.append((f"interpreter floor: {python} -I -c pass", floor, 0, 0))
            for index, python in enumerate(pythons):
                script = install(Path(tmp) / f"p{index}", python)
                measure([str(script), "sample"], env)  # warm the page cache
                runs = [measure([str(script), "sample"], env) for _ in range(args.runs)]
                document = json.loads(runs[-1][3])
                rows.append((f"sample ({python})", runs, document["process_count"], len(runs[-1][3])))
            psutil_runs = [measure([sys.executable, "-I", "-c", PSUTIL_SCAN], env) for _ in range(args.runs)]
            rows.append((f"naive psutil scan ({sys.executable})", psutil_runs, len(json.loads(psutil_runs[-1][3])),
                         len(psutil_runs[-1][3])))
    finally:
        for sleeper in sleepers:
            sleeper.kill()
        for sleeper in sleepers:
            sleeper.wait()
    print(f"{args.sleepers} sleepers (uid {0 if owner is None else owner}) started and killed "
          f"(pids {sleepers[0].pid}..{sleepers[-1].pid}); "
          f"{args.runs} runs each; targets: CPU <= {TARGET_CPU_MS:.0f} ms, peak RSS <= {TARGET_RSS_MIB:.0f} MiB")
    header = (
        f"{'what':<60} {'procs':>6} {'JSON KB':>8} {'wall ms med/p90':>16} {'CPU ms med/p90':>16} "
        f"{'RSS MiB med/max':>16}"
    )
    print(header)
    print("-" * len(header))
    for label, runs, procs, size in rows:
        walls, cpus, rss = ([r[i] for r in runs] for i in range(3))
        print(
            f"{label[:60]:<60} {procs:>6} {size / 1024:>8.1f} "
            f"{statistics.median(walls):>7.1f} / {p90(walls):>6.1f} "
            f"{statistics.median(cpus):>7.1f} / {p90(cpus):>6.1f} "
            f"{statistics.median(rss):>7.1f} / {max(rss):>6.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
