"""The commands that act on one instance (or, with ``--all``, on each): start, stop,
restart, status, repair, plan, doctor, logs, exec and shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from coldfront_launch.cli.common import (
    IMAGE_OPTION,
    IntRange,
    emit,
    friendly,
    hook_option,
    instance_command,
    json_option,
    launcher_of,
    name_option,
    print_started,
    settings_of,
    start_overrides,
)
from coldfront_launch.exitcodes import ExitCode


@instance_command(hook_option, IMAGE_OPTION,
                  click.option("--no-wait", is_flag=True, help="Return once the instance runs."))
def start(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, no_wait: bool,
          as_json: bool) -> None:
    """Start ColdFront: hooks prepare the host, the instance boots, then wait until ready."""
    started = launcher_of(ctx, **start_overrides(hooks, image)).start(wait=not no_wait)
    emit(started.to_json(), as_json, lambda: print_started(started.to_json()))


@instance_command()
def stop(ctx: click.Context, as_json: bool) -> None:
    """Stop the instance and undo every host change cf-launch made."""
    launcher = launcher_of(ctx)
    timings = launcher.stop()
    how = timings.pop("shutdown", None)
    failed = timings.pop("plugin_failures", [])
    said = {"poweroff": " (systemd inside powered off)"}.get(str(how), "")
    also = f"; {len(failed)} plugin hook(s) failed (above)" if failed else ""
    emit({"name": launcher.settings.name, "stopped": True, "shutdown": how,
          "plugin_failures": failed,
          "timings": {k: round(v, 4) for k, v in timings.items()}}, as_json,
         lambda: click.echo(f"instance {launcher.settings.name} stopped{said}; "
                            f"host changes undone{also}"))
    if failed:  # what those plugins do on stop may not be done: say so to scripts too
        sys.exit(ExitCode.FAILURE)


@instance_command(hook_option, IMAGE_OPTION)
def restart(ctx: click.Context, hooks: tuple[str, ...], image: Path | None,
            as_json: bool) -> None:
    """Stop (if running), then start."""
    started = launcher_of(ctx, **start_overrides(hooks, image)).restart()
    emit(started.to_json(), as_json, lambda: print_started(started.to_json()))


@instance_command(click.option("--all", "every", is_flag=True,
                              help="Every instance cf-launch started, running or not, "
                                   "as a table (a list with --json)."))
def status(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Show the instance, its address, systemd state, HTTP health and drift."""
    # not through Launcher: status imports only what it needs
    from coldfront_launch.lifecycle.status import (
        of,
        of_all,
    )
    if every:
        from coldfront_launch.cli.table import table
        rows = of_all(settings_of(ctx))
        emit(rows, as_json, lambda: click.echo(table(rows), nl=False))
        if any(row.get("drift") for row in rows):
            sys.exit(ExitCode.DRIFTED)
        return
    data = of(settings_of(ctx))

    def human() -> None:
        if not data["running"]:
            click.echo(f"{data['name']}: not running"
                       + (f" ({data['host_changes']} host changes to undo: run `cf-launch stop`)"
                          if data["host_changes"] else ""))
            return
        inst = data["instance"]
        click.echo(f"{data['name']}: running, pid {inst['pid']}, ip {inst['ip'] or '(host)'}")
        if data["unfinished_start"]:
            click.echo(f"  not ready: {data['unfinished_start']} (`cf-launch repair` or "
                       "`cf-launch start` finishes it)")
        click.echo(f"  hooks: {', '.join(data['hooks']) or '-'}; systemd: "
                   f"{data['system_state']}; {data['url']} -> HTTP {data['http_status'] or '-'}")
        click.echo(f"  image: {inst['image']}")
        serving = data.get("serving")
        if serving:
            click.echo(f"  serving: {serving['workers']} workers"
                       + (f", {serving['url']}" if serving["url"] else "")
                       + (f", limits {serving['limits']}" if serving["limits"] else ""))
        upgraded = data.get("upgrade")
        if upgraded and upgraded["current"]["image"] == inst["image"]:
            previous = upgraded["previous"] or {}
            click.echo(f"    ColdFront {upgraded['current']['coldfront_version'] or '?'} since "
                       f"the upgrade of {upgraded['upgraded']}; previous: "
                       f"{previous.get('image', '-')}")
        for found in data.get("drift", []):
            click.echo(f"  drift: {found} (`cf-launch repair` puts it back)")
    emit(data, as_json, human)
    if not data["running"] and not as_json:
        sys.exit(ExitCode.NOT_RUNNING)
    if data.get("unfinished_start"):
        sys.exit(ExitCode.NOT_READY)
    if data.get("drift"):
        sys.exit(ExitCode.DRIFTED)


REPAIR_LOCK_WAIT = 30.0  # seconds: a supervisor's own repair holds the lock briefly


@instance_command(click.option("--all", "every", is_flag=True,
                              help="Every instance cf-launch knows."))
def repair(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Put back what cf-launch applied and something else removed (firewall reloads)."""
    launcher = launcher_of(ctx)
    if every:
        results = launcher.repair_all(REPAIR_LOCK_WAIT)
    else:
        results = [{"name": launcher.settings.name, "running": True,
                    **launcher.repair(REPAIR_LOCK_WAIT)}]

    def human() -> None:
        for item in results:
            if not item["running"]:
                click.echo(f"{item['name']}: not running (`cf-launch stop` undoes what is "
                           "left)")
                continue
            done = [f"finished the start ({d})" for d in item.get("finished", [])]
            done += [f"restored {d}" for d in item["restored"]]
            click.echo(f"{item['name']}: " + ("; ".join(done) if done else "nothing missing"))
            for found in item["cannot"]:
                click.echo(f"{item['name']}: cannot restore {found}")
    emit(results, as_json, human)
    if any(item["cannot"] for item in results):
        sys.exit(ExitCode.HOST_CHANGE)


@instance_command(hook_option, IMAGE_OPTION)
def plan(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, as_json: bool) -> None:
    """Print the exact apptainer command and every host change `start` would make."""
    result = launcher_of(ctx, **start_overrides(hooks, image)).plan()

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
        serving = result.serving
        click.echo("# serving")
        click.echo(f"- workers: {serving['workers']} (from {serving['workers_from']})")
        click.echo(f"- public URL: {serving['url'] or '(none: the hosts below)'}")
        click.echo(f"- allowed hosts: {', '.join(serving['allowed_hosts'])}")
        if serving["trusted_proxies"]:
            click.echo(f"- trusted proxies: {', '.join(serving['trusted_proxies'])}")
        limits = serving["limits"]
        click.echo("- limits: " + (", ".join(f"{k} {val}" for k, val in limits.items())
                                   or "none"))
        for problem in result.problems:
            click.echo(f"{'✗' if problem.fatal else '!'} {problem.check}: {problem.message}")
    emit(result.to_json(), as_json, human)
    if any(p.fatal for p in result.problems):
        sys.exit(ExitCode.PREFLIGHT)  # so scripts can use `plan` as a check


@click.command("exec", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@friendly
def exec_cmd(name: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside instance NAME: cf-launch exec NAME -- CMD..."""
    from coldfront_launch import apptainer
    argv = apptainer.exec_argv(_running(name), list(command))
    os.execvp(argv[0], argv)


@click.command()
@name_option
@click.pass_context
@friendly
def shell(ctx: click.Context) -> None:
    """Open a shell inside the instance."""
    from coldfront_launch import apptainer
    argv = apptainer.shell_argv(_running(settings_of(ctx).name))
    os.execvp(argv[0], argv)


@click.command()
@name_option
@click.option("-n", "--lines", type=IntRange(1, 1_000_000), default=100, show_default=True,
              help="Lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep following the journal.")
@click.pass_context
@friendly
def logs(ctx: click.Context, lines: int, follow: bool) -> None:
    """Show the systemd journal inside the instance; Apptainer's log if it is not running."""
    from coldfront_launch import apptainer
    name = settings_of(ctx).name
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


@click.command()
@name_option
@hook_option
@json_option
@click.pass_context
@friendly
def doctor(ctx: click.Context, hooks: tuple[str, ...], as_json: bool) -> None:
    """Check the host and settings (core and the plugins to run); say how to fix each."""
    problems = launcher_of(ctx, hooks=list(hooks) or None).doctor()

    def human() -> None:
        if not problems:
            click.echo("all checks passed: ready to start")
        for p in problems:
            mark = "✗" if p.fatal else "!"
            click.echo(f"{mark} {p.check}: {p.message}")
            if p.hint:
                click.echo(f"    fix: {p.hint}")
    emit({"ok": not any(p.fatal for p in problems), "problems": [p.to_json() for p in problems]},
          as_json, human)
    if any(p.fatal for p in problems):
        sys.exit(ExitCode.PREFLIGHT)


COMMANDS = (start, stop, restart, status, repair, plan, exec_cmd, shell, logs, doctor,)
