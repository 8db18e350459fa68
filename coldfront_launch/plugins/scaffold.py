"""``cf-launch plugin new``: a ready-to-install plugin distribution from templates.

The templates are package data (``coldfront_launch/plugins/template``), rendered with
jinja2. The plugin name is the entry point's name (``--hook NAME``, ``[hook.NAME]``); the
module is ``cf_launch_<name>`` and the distribution ``cf-launch-<name>``.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from coldfront_launch import resources
from coldfront_launch.errors import ConfigError, LaunchError

TEMPLATES = "template"
#: A plugin name: lower-case letters and digits, words joined by single '-' or '_'.
NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME = 40
#: Names a third-party entry point cannot take (cf-launch's own plugins win).
RESERVED = ("core", "bridge", "override")
#: template file -> path in the new distribution (``{module}`` is filled in)
FILES = {
    "pyproject.toml.j2": "pyproject.toml",
    "README.md.j2": "README.md",
    "module.py.j2": "{module}/__init__.py",
    "test_plugin.py.j2": "tests/test_{module}.py",
}


def check_name(name: str) -> str:
    """``name`` if it can be an entry point, a ``--hook`` value and (with ``_`` for
    ``-``) part of a module name; else a :class:`ConfigError`."""
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        raise ConfigError("NAME", f"{name!r} is not a valid plugin name",
                          f"use lower-case letters and digits, words joined by '-' or '_', "
                          f"starting with a letter (at most {MAX_NAME} characters), e.g. dns")
    if name in RESERVED:
        raise ConfigError("NAME", f"{name!r} is the name of a built-in plugin",
                          "choose another name")
    return name


def _target(name: str, directory: Path | None, force: bool) -> Path:
    target = directory if directory is not None else Path.cwd() / f"cf-launch-{name}"
    if target.exists() and not target.is_dir():
        raise ConfigError("--dir", f"{target} exists and is not a folder", "choose another --dir")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ConfigError("--dir", f"{target} exists and is not empty",
                          "choose another --dir, or add --force to overwrite the plugin's files")
    return target


def new_plugin(name: str, directory: Path | None = None, force: bool = False) -> list[Path]:
    """Write the distribution for plugin ``name``; return the files written."""
    check_name(name)
    target = _target(name, directory, force)
    module = "cf_launch_" + name.replace("-", "_")
    values = {"plugin": name, "module": module, "dist": f"cf-launch-{name}",
              "cf_version": metadata.version("coldfront-launch")}
    written = []
    for template, relative in FILES.items():
        path = target / relative.format(module=module)
        text = resources.render("coldfront_launch.plugins", f"{TEMPLATES}/{template}", **values)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as err:
            raise LaunchError(f"cannot write {path}: {err.strerror}",
                              "choose a --dir you can write to") from None
        written.append(path)
    return written
