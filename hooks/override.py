"""The ``override`` hook (work in progress)."""
