"""Which GPUs a user's new processes may not open: ``None`` (none denied), ``ALL``, or a sorted tuple of minors.

``/dev/nvidiaN`` is character device 195:N. ``ALL`` is the tier block (every NVIDIA device, as ``gpu-block``
without ``--minors``); a tuple is the GPU queue's mask (the minors granted to someone else), which leaves
``nvidiactl``, ``nvidia-uvm`` and the other shared NVIDIA devices open so the allowed GPUs still work.
"""

ALL = "all"


def view(mask):
    """The mask as ``gpu-state`` reports it in ``denied_minors``: ``"all"`` or a list (empty = none)."""
    if mask is None:
        return []
    return ALL if mask == ALL else list(mask)
