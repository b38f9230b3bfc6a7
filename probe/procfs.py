"""Pure parsers for the /proc files the probe reads, plus the one helper that reads a file.

Every reader takes the procfs root as an argument so tests can point it at a fixture tree.
"""

import collections

PF_KTHREAD = 0x00200000

ProcStat = collections.namedtuple("ProcStat", "pid comm state ppid flags utime stime start_ticks rss_pages")
ProcStat.__doc__ = "The fields of /proc/PID/stat the probe uses (times in clock ticks, rss in pages)."

Mount = collections.namedtuple("Mount", "device mountpoint fstype")


def read_bytes(path, limit=1 << 20):
    """The first ``limit`` bytes of ``path`` (OSError propagates: callers translate it)."""
    with open(path, "rb") as handle:
        return handle.read(limit)


def read_text(path, limit=1 << 20):
    return read_bytes(path, limit).decode("utf-8", "replace")


def parse_stat(data):
    """Parse /proc/PID/stat; the command name may contain spaces and parentheses, so split at the last ')'."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    open_paren = data.index("(")
    close_paren = data.rindex(")")
    fields = data[close_paren + 2 :].split()
    return ProcStat(
        pid=int(data[:open_paren]),
        comm=data[open_paren + 1 : close_paren],
        state=fields[0],
        ppid=int(fields[1]),
        flags=int(fields[6]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        start_ticks=int(fields[19]),
        rss_pages=int(fields[21]),
    )


def is_kernel_thread(stat):
    return bool(stat.flags & PF_KTHREAD)


def parse_status_real_uid(data):
    """The real uid from /proc/PID/status bytes (the first number of the ``Uid:`` line)."""
    start = data.find(b"\nUid:")
    if start < 0:
        raise ValueError("no Uid: line")
    return int(data[start + 5 : data.index(b"\n", start + 5)].split()[0])


def parse_btime(text):
    """Boot time (Unix seconds) from /proc/stat."""
    for line in text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise ValueError("no btime line")


def parse_meminfo(text):
    """/proc/meminfo as ``{key: bytes}`` (the kernel reports kB = 1024 bytes)."""
    values = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def parse_cpuinfo(text):
    """``(model, physical_cores, sockets)`` from /proc/cpuinfo; counts are None where the kernel omits them."""
    model = None
    cores = set()
    sockets = set()
    physical = core = None
    for line in text.splitlines() + [""]:
        key, _, value = line.partition(":")
        key = key.strip()
        value = value.strip()
        if key in ("model name", "Model", "cpu model") and model is None:
            model = value
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif not line.strip():
            if physical is not None:
                sockets.add(physical)
                if core is not None:
                    cores.add((physical, core))
            physical = core = None
    return model, (len(cores) or None), (len(sockets) or None)


def parse_devices(text):
    """/proc/devices as ``{"char": [(major, name)], "block": [(major, name)]}``."""
    result = {"char": [], "block": []}
    section = None
    for line in text.splitlines():
        if line.startswith("Character devices"):
            section = "char"
        elif line.startswith("Block devices"):
            section = "block"
        elif section and line.strip():
            major, _, name = line.strip().partition(" ")
            if major.isdigit():
                result[section].append((int(major), name.strip()))
    return result


def _unescape_mount_field(field):
    # The kernel escapes space, tab, newline and backslash in mount fields as octal \NNN.
    if "\\" not in field:
        return field
    out = []
    index = 0
    while index < len(field):
        if field[index] == "\\" and field[index + 1 : index + 4].isdigit():
            out.append(chr(int(field[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def parse_mounts(text):
    """/proc/self/mounts as a list of ``Mount``."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append(Mount(*(_unescape_mount_field(p) for p in parts[:3])))
    return mounts
