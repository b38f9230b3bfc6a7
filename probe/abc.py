"""The contract every enforcement backend (systemd, cgroup v2, cgroup v1) implements.

A backend splits each enforcement into facts and a plan: ``observe_*`` reads the node (files or a
command plus a pure parser) and ``plan_*`` is a pure function from the desired and the observed state to
a ``probe.plan.Plan``. The node command executes the plan and observes again, so every verb reports
what it changed, and a repeated request plans nothing.
"""

import abc


class Backend(abc.ABC):
    """One mechanism for CPU quotas and GPU device blocks; ``name`` appears in every result."""

    name = ""

    @abc.abstractmethod
    def observe_quota(self, uid):
        """The user's CPU quota now: an object with ``quota_ppm`` (int or None = none) and ``raw`` (str)."""

    @abc.abstractmethod
    def plan_quota(self, uid, ppm, observed):
        """The plan that makes the quota ``ppm`` (None = clear) from ``observed``; pure."""

    @abc.abstractmethod
    def observe_gpu(self, uid):
        """Whether new GPU use is blocked for the user: an object with ``blocked`` (bool: any denial),
        ``denied_minors`` (a ``probe.gpumask`` mask) and ``majors``."""

    @abc.abstractmethod
    def observe_session(self, uid):
        """Which of the user's groups exist now (the restrictions in force, the accounting group)."""

    @abc.abstractmethod
    def plan_session(self, uid, pid, metered, observed):
        """The plan that puts the new session process ``pid`` into every restriction group of ``uid`` that
        exists, and into the user's accounting group when ``metered``; pure. Children inherit the groups, so
        everything the session starts is inside them from its first instruction."""

    @abc.abstractmethod
    def plan_gpu(self, uid, mask, observed):
        """The plan that makes the denied GPUs ``mask`` (``probe.gpumask``: None, ``ALL`` or minors) from
        ``observed``; pure, and empty when ``observed`` already is that mask.

        Raises ``probe.errors.Unsupported`` when the node has no device-control mechanism.
        """
