"""The GPU queue's per-tick driver (docs/queue.md, "The per-tick driver"): read the nodes' drop boxes, run the
queue's tick (``control.queue.tick.run``), write each user's answer back to the nodes."""
