"""The commands about plugins: ``hooks`` (what is installed) and ``plugin new`` (write
one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coldfront_launch.cli.common import emit, examples, friendly, json_option


@click.command("hooks", epilog=examples("""
    cf-launch hooks --json
"""))
@json_option
@friendly
def hooks_cmd(as_json: bool) -> None:
    """List installed plugins (the names --hook takes) and the hooks each implements."""
    from coldfront_launch import plugins
    loaded = plugins.load()
    data: list[dict[str, Any]] = [
        {"name": n, "module": plugins.plugin_origin(n), "hooks": plugins.implemented_hooks(n)}
        for n in plugins.available()]
    failed = [{"name": n, "error": e} for n, e in loaded.failed.items()]
    blocked = list(loaded.blocked)

    def human() -> None:
        for item in data:
            click.echo(f"{item['name']} ({item['module']})")
            for hook in item["hooks"]:
                click.echo(f"    {hook}")
        for item in failed:
            click.echo(f"{item['name']}: FAILED TO LOAD: {item['error']}")
        for name in blocked:
            click.echo(f"{name}: blocked by CF_LAUNCH_DISABLE_PLUGINS")
        for warning in loaded.warnings:
            click.echo(f"warning: {warning}", err=True)
    emit({"plugins": data, "failed": failed, "blocked": blocked,
           "warnings": loaded.warnings}, as_json, human)


@click.group()
def plugin() -> None:
    """Write cf-launch plugins."""


@plugin.command("new", epilog=examples("""
    cf-launch plugin new site-dns --dir ./cf-launch-site-dns
"""))
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path),
              help="Where to write it (default: ./cf-launch-NAME).")
@click.option("--force", is_flag=True, help="Overwrite the plugin's files in a used --dir.")
@friendly
def plugin_new(name: str, directory: Path | None, force: bool) -> None:
    """Write a ready-to-install plugin distribution NAME (entry point, hooks, tests)."""
    from coldfront_launch.plugins.scaffold import new_plugin
    for path in new_plugin(name, directory, force):
        click.echo(path)


COMMANDS = (hooks_cmd, plugin)
