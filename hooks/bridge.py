"""The ``bridge`` hook (work in progress)."""
