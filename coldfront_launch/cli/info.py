"""The commands that describe cf-launch itself: ``config show`` (the settings and where
each comes from) and ``version`` (cf-launch, Python, Apptainer, the image's ColdFront and
the plugins, for a bug report). Neither changes anything nor boots an image."""

from __future__ import annotations

import datetime
import json
import platform
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import click

from coldfront_launch.cli.common import (
    emit,
    examples,
    friendly,
    json_option,
    name_option,
    settings_of,
)
from coldfront_launch.errors import LaunchError

if TYPE_CHECKING:
    from coldfront_launch.config.sources import Shown

#: ``config show`` aligns the sources' comments after values up to this wide.
ALIGN = 48
#: Seconds ``apptainer --version`` may take.
VERSION_TIMEOUT = 15.0


@click.group("config")
def config_group() -> None:
    """The settings cf-launch reads (docs/configuration.md)."""


@config_group.command("show", epilog=examples("""
    cf-launch config show                    # each value with its file, flag or default
    cf-launch --config site.toml config show --json
"""))
@name_option
@json_option
@click.pass_context
@friendly
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Show the merged settings, each with the file, flag or default it comes from
    (secrets masked)."""
    from coldfront_launch.config.sources import show
    obj = ctx.obj
    shown = show(obj["config"], name=obj["name"], state_root=obj["state_root"],
                 name_flag="NAME" if obj.get("name_source") == "NAME" else "--name")
    emit(plain(shown.to_json()), as_json, lambda: print_shown(shown))


def print_shown(shown: Shown) -> None:
    click.echo("# files read (lowest precedence first): "
               + (", ".join(shown.files) if shown.files else "none"))
    lines = [(f"{leaf.key} = {toml_value(leaf.value)}", leaf.source) for leaf in shown.leaves]
    width = min(max((len(text) for text, _ in lines), default=0), ALIGN)
    for text, source in lines:
        click.echo(f"{text.ljust(width)}  # {source}")
    pinned = shown.to_json()["pinned_image"]
    if pinned is not None:
        click.echo(f"# start boots {pinned['path']}, pinned by `cf-launch upgrade` "
                   f"({pinned['source']})")


def toml_value(value: Any) -> str:
    """A value as TOML writes it (None, which TOML lacks: ``(not set)``)."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        from coldfront_launch.config.sources import dotted
        return "{" + ", ".join(f"{dotted((str(k),))} = {toml_value(item)}"
                               for k, item in value.items()) + "}"
    return json.dumps(str(value), ensure_ascii=False)


def plain(value: Any) -> Any:
    """``value`` with TOML's dates and times as ISO 8601 text, for JSON."""
    if isinstance(value, dict):
        return {str(k): plain(item) for k, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    return value


@click.command("version", epilog=examples("""
    cf-launch version --json     # for a bug report
"""))
@json_option
@click.pass_context
@friendly
def version(ctx: click.Context, as_json: bool) -> None:
    """Show the versions of cf-launch, Python, Apptainer, the configured image's ColdFront
    (when an upgrade recorded it) and the installed plugins."""
    ours = _distribution_version("coldfront-launch")
    found, failed = _plugins(ours)
    data: dict[str, Any] = {"cf_launch": ours, "python": platform.python_version(),
            "apptainer": apptainer_version(), "image": _image(ctx),
            "plugins": found, "failed_plugins": failed}

    def human() -> None:
        image = data["image"]
        rows = [("cf-launch", ours or "unknown (not installed)"),
                ("python", f"{data['python']} ({platform.python_implementation()})"),
                ("apptainer", data["apptainer"] or "not found"),
                ("image", image["path"] or "unknown"),
                ("coldfront", image["coldfront_version"] or "unknown"),
                ("plugins", ", ".join(f"{p['name']} {p['version'] or '?'}" for p in found)
                 or "none")]
        for label, text in rows:
            click.echo(f"{label:<11}{text}")
    emit(data, as_json, human)


def note(text: str) -> None:
    click.echo(f"note: {text}", err=True)


def _distribution_version(name: str) -> str | None:
    from importlib import metadata  # not at import: `--help` stays light
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # run from a source tree
        return None


def apptainer_version() -> str | None:
    """``apptainer --version`` (``1.4.5``), or None when it is not on PATH or does not
    answer."""
    program = shutil.which("apptainer")
    if program is None:
        return None
    try:
        result = subprocess.run([program, "--version"], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        note(f"{program} --version failed: {err}")
        return None
    words = result.stdout.split()
    if result.returncode != 0 or not words:
        note(f"{program} --version failed (exit {result.returncode})")
        return None
    return words[-1]


def _image(ctx: click.Context) -> dict[str, str | None]:
    """The image ``start`` boots and its ColdFront version, as ``cf-launch upgrade``
    recorded it (None when no upgrade did: finding out would mean running the image)."""
    from coldfront_launch.state import pin as imagepin
    try:
        settings = settings_of(ctx)
        pin = imagepin.read(settings.state_dir)
    except LaunchError as err:
        note(f"settings not read, so the image is unknown: {err}")
        return {"path": None, "coldfront_version": None}
    recorded = None
    if pin is not None and settings.pinned_image is not None \
            and str(settings.pinned_image) == pin.current.image:
        recorded = pin.current.coldfront_version
    return {"path": str(settings.image_path), "coldfront_version": recorded}


def _plugins(ours: str | None) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The plugins ``--hook`` can name (as ``cf-launch hooks`` lists them), each with its
    distribution's version (the built-in ones: cf-launch's); and those that failed."""
    from coldfront_launch import plugins
    loaded = plugins.load()
    builtin = {name for name, _module in plugins.BUILTIN}
    dists = {ep.name: getattr(getattr(ep, "dist", None), "version", None)
             for ep in plugins._entry_points()}  # .dist: Python 3.10+
    if any(version is None for version in dists.values()):  # Python 3.9: ask each one
        dists.update(_versions_by_entry_point())
    found = [{"name": name, "module": plugins.plugin_origin(name),
              "version": ours if name in builtin else dists.get(name)}
             for name in plugins.available()]
    failed = [{"name": name, "error": error} for name, error in loaded.failed.items()]
    for item in failed:
        note(f"plugin {item['name']} failed to load: {item['error']}")
    return found, failed


COMMANDS = [config_group, version]


def _versions_by_entry_point() -> dict[str, str]:
    """Each cf-launch entry point's distribution version, from the distributions' own
    metadata (Python 3.9's entry points do not say which distribution they are in)."""
    from importlib import metadata

    from coldfront_launch import plugins
    group = plugins.GROUP
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        for ep in dist.entry_points:
            if ep.group == group:
                found.setdefault(ep.name, dist.version)
    return found
