"""What a sample could not read, and why: collected as data, never raised."""


class Degradations:
    """An append-only list of ``{"source", "reason", "detail"}`` entries."""

    def __init__(self):
        self._entries = []

    def add(self, source, reason, detail=""):
        self._entries.append({"source": source, "reason": reason, "detail": detail})

    def as_list(self):
        return list(self._entries)
