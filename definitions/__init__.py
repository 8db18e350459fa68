"""Apptainer definition files and the files they copy in (read with importlib.resources)."""
