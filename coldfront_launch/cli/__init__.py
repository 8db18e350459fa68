"""The ``cf-launch`` command: a thin layer over :class:`~coldfront_launch.Launcher`.

Exit codes: :class:`~coldfront_launch.exitcodes.ExitCode` (and the README's table).
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from coldfront_launch.cli import data as cli_data
from coldfront_launch.cli import embed as cli_embed
from coldfront_launch.cli import image as cli_upgrade
from coldfront_launch.cli import manage as cli_site
from coldfront_launch.cli import service as cli_service
from coldfront_launch.cli.common import IMAGE_OPTION, build_printer, friendly, instance_command
from coldfront_launch.cli.common import emit as _emit
from coldfront_launch.cli.common import hook_option as _hook_option
from coldfront_launch.cli.common import json_option as _json_option
from coldfront_launch.cli.common import launcher_of as _launcher
from coldfront_launch.cli.common import name_option as _name_option
from coldfront_launch.cli.common import print_started as _print_started
from coldfront_launch.cli.common import settings_of as _settings
from coldfront_launch.cli.common import start_overrides as _start_overrides
from coldfront_launch.exitcodes import ExitCode


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(path_type=Path),
              help="TOML settings; overrides ./cf-launch.toml and /etc/cf-launch/config.toml.")
@click.option("--name", help="Instance name (default: coldfront).")
@click.option("--state-root", type=click.Path(path_type=Path),
              help="Where instance state lives (default: /var/lib/cf-launch).")
@click.version_option(package_name="coldfront-launch")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, name: str | None,
        state_root: Path | None) -> None:
    """Build, boot and network ColdFront in an Apptainer instance."""
    ctx.obj = {"config": config, "name": name, "state_root": state_root}


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild every layer, cached or not.")
@click.option("--fakeroot/--no-fakeroot", default=None, help="Build with --fakeroot.")
@click.option("--bind", "binds", multiple=True, help="Extra --bind for %post (repeatable).")
@click.option("--ca-bundle", type=click.Path(path_type=Path),
              help="CA bundle that %post trusts (TLS-intercepting proxies).")
@click.option("--layer", "layers", multiple=True, help="Layer stack, base first (repeatable).")
@click.option("-v", "--verbose", is_flag=True, help="Show all of Apptainer's output.")
@_json_option
@click.pass_context
@friendly
def build(ctx: click.Context, force: bool, fakeroot: bool | None, binds: tuple[str, ...],
          ca_bundle: Path | None, layers: tuple[str, ...], verbose: bool,
          as_json: bool) -> None:
    """Build the ColdFront image from layered definitions (cached by content)."""
    from coldfront_launch.config.settings import replace_build
    from coldfront_launch.lifecycle.launcher import Launcher
    from coldfront_launch.state.pin import held_back
    settings = _settings(ctx)
    raw_build: dict[str, Any] = {"fakeroot": fakeroot,
                                 "binds": tuple(binds) if binds else None,
                                 "layers": tuple(layers) if layers else None}
    if ca_bundle is not None:
        raw_build["ca_bundle"] = str(ca_bundle)
    settings = replace_build(settings, **raw_build)
    events: list[dict[str, Any]] = []
    progress = build_printer(verbose, events)
    image = Launcher(settings).build(force=force, progress=progress)
    held = held_back(settings.state_root, image)
    for name, pinned in held.items():
        click.echo(f"note: instance {name} keeps booting {pinned} from its last upgrade; "
                   f"`cf-launch upgrade --name {name}` moves it to this build", err=True)
    _emit({"image": str(image), "target": str(image.resolve()), "layers": events,
           "held_back": held}, as_json,
          lambda: click.echo(f"image: {image} -> {image.resolve()}"))


@instance_command(cli, _hook_option, IMAGE_OPTION,
                  click.option("--no-wait", is_flag=True, help="Return once the instance runs."))
def start(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, no_wait: bool,
          as_json: bool) -> None:
    """Start ColdFront: hooks prepare the host, the instance boots, then wait until ready."""
    started = _launcher(ctx, **_start_overrides(hooks, image)).start(wait=not no_wait)
    _emit(started.to_json(), as_json, lambda: _print_started(started.to_json()))


@instance_command(cli)
def stop(ctx: click.Context, as_json: bool) -> None:
    """Stop the instance and undo every host change cf-launch made."""
    launcher = _launcher(ctx)
    timings = launcher.stop()
    how = timings.pop("shutdown", None)
    said = {"poweroff": " (systemd inside powered off)"}.get(str(how), "")
    _emit({"name": launcher.settings.name, "stopped": True, "shutdown": how,
           "timings": {k: round(v, 4) for k, v in timings.items()}}, as_json,
          lambda: click.echo(f"instance {launcher.settings.name} stopped{said}; "
                             "host changes undone"))


@instance_command(cli, _hook_option, IMAGE_OPTION)
def restart(ctx: click.Context, hooks: tuple[str, ...], image: Path | None,
            as_json: bool) -> None:
    """Stop (if running), then start."""
    started = _launcher(ctx, **_start_overrides(hooks, image)).restart()
    _emit(started.to_json(), as_json, lambda: _print_started(started.to_json()))


@instance_command(cli, click.option("--all", "every", is_flag=True,
                                   help="Every instance cf-launch knows, and every running "
                                        "one, as a table (a list with --json)."))
def status(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Show the instance, its address, systemd state, HTTP health and drift."""
    # not through Launcher: status imports only what it needs
    from coldfront_launch.lifecycle.status import (
        of,
        of_all,
    )
    if every:
        from coldfront_launch.cli.table import table
        rows = of_all(_settings(ctx))
        _emit(rows, as_json, lambda: click.echo(table(rows), nl=False))
        if any(row.get("drift") for row in rows):
            sys.exit(ExitCode.DRIFTED)
        return
    data = of(_settings(ctx))

    def human() -> None:
        if not data["running"]:
            click.echo(f"{data['name']}: not running"
                       + (f" ({data['host_changes']} host changes to undo: run `cf-launch stop`)"
                          if data["host_changes"] else ""))
            return
        inst = data["instance"]
        click.echo(f"{data['name']}: running, pid {inst['pid']}, ip {inst['ip'] or '(host)'}")
        click.echo(f"  hooks: {', '.join(data['hooks']) or '-'}; systemd: "
                   f"{data['system_state']}; {data['url']} -> HTTP {data['http_status'] or '-'}")
        click.echo(f"  image: {inst['image']}")
        upgraded = data.get("upgrade")
        if upgraded and upgraded["current"]["image"] == inst["image"]:
            previous = upgraded["previous"] or {}
            click.echo(f"    ColdFront {upgraded['current']['coldfront_version'] or '?'} since "
                       f"the upgrade of {upgraded['upgraded']}; previous: "
                       f"{previous.get('image', '-')}")
        for found in data.get("drift", []):
            click.echo(f"  drift: {found} (`cf-launch repair` puts it back)")
    _emit(data, as_json, human)
    if not data["running"] and not as_json:
        sys.exit(ExitCode.NOT_RUNNING)
    if data.get("drift"):
        sys.exit(ExitCode.DRIFTED)


REPAIR_LOCK_WAIT = 30.0  # seconds: a supervisor's own repair holds the lock briefly


@instance_command(cli, click.option("--all", "every", is_flag=True,
                                   help="Every instance cf-launch knows."))
def repair(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Put back what cf-launch applied and something else removed (firewall reloads)."""
    from coldfront_launch import apptainer
    from coldfront_launch.lifecycle.launcher import Launcher
    from coldfront_launch.state.instance import known_instances
    launcher = _launcher(ctx)
    names = known_instances(launcher.settings.state_root) if every else [launcher.settings.name]
    results: list[dict[str, Any]] = []
    for name in names:
        if every and apptainer.find(name) is None:  # left by a crash or a reboot: not ours
            results.append({"name": name, "running": False, "restored": [], "cannot": []})
            continue
        one = Launcher(replace(launcher.settings, name=name), report=launcher.report)
        results.append({"name": name, "running": True, **one.repair(REPAIR_LOCK_WAIT)})

    def human() -> None:
        for item in results:
            if not item["running"]:
                click.echo(f"{item['name']}: not running (`cf-launch stop` undoes what is "
                           "left)")
                continue
            done = item["restored"]
            click.echo(f"{item['name']}: " + ("; ".join(f"restored {d}" for d in done)
                                              if done else "nothing missing"))
            for found in item["cannot"]:
                click.echo(f"{item['name']}: cannot restore {found}")
    _emit(results, as_json, human)
    if any(item["cannot"] for item in results):
        sys.exit(ExitCode.HOST_CHANGE)


@instance_command(cli, _hook_option, IMAGE_OPTION)
def plan(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, as_json: bool) -> None:
    """Print the exact apptainer command and every host change `start` would make."""
    result = _launcher(ctx, **_start_overrides(hooks, image)).plan()

    def human() -> None:
        import shlex
        click.echo("# command")
        click.echo(shlex.join(result.command))
        click.echo("# host changes (undone by `cf-launch stop`)")
        for change in result.changes:
            click.echo(f"- {change.describe()}")
        click.echo("# ColdFront env file (secrets shown as ***)")
        for var in result.env:
            click.echo(f"- {var['name']}: {var['change']} "
                       f"{var['old'] or ''}{' -> ' if var['change'] == 'changed' else ''}"
                       f"{var['new'] or ''}")
        for problem in result.problems:
            click.echo(f"{'✗' if problem.fatal else '!'} {problem.check}: {problem.message}")
    _emit(result.to_json(), as_json, human)
    if any(p.fatal for p in result.problems):
        sys.exit(ExitCode.PREFLIGHT)  # so scripts can use `plan` as a check


@cli.command("hooks")
@_json_option
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
    _emit({"plugins": data, "failed": failed, "blocked": blocked,
           "warnings": loaded.warnings}, as_json, human)


@cli.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@friendly
def exec_cmd(name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside instance NAME: cf-launch exec NAME -- CMD..."""
    from coldfront_launch import apptainer
    argv = apptainer.exec_argv(_running(name), list(command))
    os.execvp(argv[0], argv)


@cli.command()
@_name_option
@click.pass_context
@friendly
def shell(ctx: click.Context) -> None:
    """Open a shell inside the instance."""
    from coldfront_launch import apptainer
    argv = apptainer.shell_argv(_running(_settings(ctx).name))
    os.execvp(argv[0], argv)


@cli.command()
@_name_option
@click.option("-n", "--lines", default=100, show_default=True, help="Lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep following the journal.")
@click.pass_context
@friendly
def logs(ctx: click.Context, lines: int, follow: bool) -> None:
    """Show the systemd journal inside the instance; Apptainer's log if it is not running."""
    from coldfront_launch import apptainer
    name = _settings(ctx).name
    if apptainer.find(name) is None:
        _print_apptainer_logs(name, lines)
        return
    argv = ["journalctl", "--no-pager", "-n", str(lines)] + (["-f"] if follow else [])
    argv = apptainer.exec_argv(name, argv)
    os.execvp(argv[0], argv)


def _print_apptainer_logs(name: str, lines: int) -> None:
    from coldfront_launch import apptainer
    from coldfront_launch.errors import NotRunningError
    found = [p for p in apptainer.log_paths(name) if p.is_file()]
    if not found:
        raise NotRunningError(f"instance {name} is not running and has no Apptainer log",
                              "start it with `cf-launch start`")
    click.echo(f"instance {name} is not running; Apptainer's log of its last start:", err=True)
    for path in found:
        click.echo(f"==> {path} <==")
        click.echo("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))


def _running(name: str) -> str:
    from coldfront_launch import apptainer
    from coldfront_launch.config.validate import instance_name
    from coldfront_launch.errors import NotRunningError
    instance_name("NAME", name)
    if apptainer.find(name) is None:
        raise NotRunningError(f"instance {name} is not running", "start it with `cf-launch start`")
    return name


@cli.command()
@_name_option
@_hook_option
@_json_option
@click.pass_context
@friendly
def doctor(ctx: click.Context, hooks: tuple[str, ...], as_json: bool) -> None:
    """Check the host and settings (core and the plugins to run); say how to fix each."""
    problems = _launcher(ctx, hooks=list(hooks) or None).doctor()

    def human() -> None:
        if not problems:
            click.echo("all checks passed: ready to start")
        for p in problems:
            mark = "✗" if p.fatal else "!"
            click.echo(f"{mark} {p.check}: {p.message}")
            if p.hint:
                click.echo(f"    fix: {p.hint}")
    _emit({"ok": not any(p.fatal for p in problems), "problems": [p.to_json() for p in problems]},
          as_json, human)
    if any(p.fatal for p in problems):
        sys.exit(ExitCode.PREFLIGHT)


@cli.group()
def plugin() -> None:
    """Write cf-launch plugins."""


@plugin.command("new")
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


for _command in (*cli_embed.COMMANDS, *cli_service.COMMANDS, *cli_data.COMMANDS,
                 *cli_site.COMMANDS, *cli_upgrade.COMMANDS):
    cli.add_command(_command)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM becomes an orderly exit, so a start in progress undoes what it did."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="cf-launch")

