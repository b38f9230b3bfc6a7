"""Exact integer conversions between a quota in ppm of the node's CPUs and each backend's unit.

Every conversion rounds down, so a user never gets more CPU than asked for.
"""

PERIOD_US = 100000
MIN_QUOTA_US = 1000  # the kernel refuses cfs quotas below 1 ms
PPM = 1000000


def to_systemd_percent(ppm, cpus):
    """``CPUQuota=`` percent (of ONE CPU): floor(ppm * cpus / 10000), at least 1."""
    return max(1, ppm * cpus // 10000)


def to_quota_us(ppm, cpus):
    """Microseconds of CPU per ``PERIOD_US``: floor(ppm * cpus * PERIOD_US / 1e6), at least ``MIN_QUOTA_US``."""
    return max(MIN_QUOTA_US, ppm * cpus * PERIOD_US // PPM)


def from_quota_us(quota_us, period_us, cpus):
    """The ppm of the node that ``quota_us`` per ``period_us`` grants, rounded down."""
    return quota_us * PPM // (period_us * cpus)


def from_usec_per_sec(usec_per_sec, cpus):
    """The ppm of the node that systemd's ``CPUQuotaPerSecUSec`` grants, rounded down."""
    return usec_per_sec // cpus
