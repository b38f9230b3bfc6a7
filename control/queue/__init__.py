"""The GPU queue (issue #15, docs/queue.md): requests, fair-share order, offers, holds, grants as leases.

``records`` holds the immutable facts, ``priority`` the fair-share order, ``allocator`` the one pure function
that turns state + free GPUs + now into decisions, ``intake`` checks what users ask for, ``store`` keeps the
state in ``control.queue_request`` / ``control.queue_gpu`` and applies a tick's decisions in one transaction.
"""
