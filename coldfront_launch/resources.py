"""Read and render the data files shipped in the package (``importlib.resources`` + jinja2)."""

from __future__ import annotations

from importlib import resources
from typing import Any


def read(package: str, name: str) -> str:
    """A data file's text, e.g. ``read("coldfront_launch.overrides", "udev/x.rules")``."""
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def render(package: str, name: str, **values: Any) -> str:
    """Render a data file as a jinja2 template; a missing value is an error, not blank.

    jinja2 is imported here, on first use: only commands that render templates pay for it."""
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=False)  # noqa: S701 - config files, not HTML
    return env.from_string(read(package, name)).render(**values)
