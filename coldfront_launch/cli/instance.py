"""The commands that act on one instance (or, with ``--all``, on each): start, stop,
restart, status, repair, plan, doctor, logs, exec and shell."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from coldfront_launch.cli import names
from coldfront_launch.cli.common import (
    IMAGE_OPTION,
    IntRange,
    Seconds,
    emit,
    examples,
    friendly,
    hook_option,
    instance_command,
    launcher_of,
    name_option,
    print_started,
    settings_of,
    start_overrides,
)
from coldfront_launch.exitcodes import ExitCode

if TYPE_CHECKING:
    from coldfront_launch.config.settings import Settings


STRICT = click.option("--strict", is_flag=True,
                      help="Exit non-zero when there is nothing to do (10: already running; "
                           "8: not running).")


@instance_command(hook_option, IMAGE_OPTION,
                  click.option("--no-wait", is_flag=True, help="Return once the instance runs."),
                  STRICT, several=True, epilog="""
                      cf-launch start                    # the instance named in the settings
                      cf-launch start coldfront --json   # already running: exit 0, says so
                      cf-launch start cf-prod cf-test    # several instances
                  """)
def start(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, no_wait: bool,
          strict: bool, as_json: bool) -> None:
    """Start ColdFront: hooks prepare the host, the instance boots, then wait until ready."""
    from coldfront_launch.errors import InstanceRunningError
    launcher = launcher_of(ctx, **start_overrides(hooks, image))
    try:
        started = launcher.start(wait=not no_wait).to_json()
    except InstanceRunningError:
        if strict:
            raise
        _refuse_if_not_ours(launcher.settings)
        started = _already_running(launcher.settings)
        _warn_if_asked_otherwise(started, launcher.settings, hooks, image)
    emit(started, as_json, lambda: print_started(started))


def _refuse_if_not_ours(settings: Settings) -> None:
    """An instance that plain ``apptainer`` started: running, but not cf-launch's."""
    from coldfront_launch.errors import InstanceRunningError
    from coldfront_launch.lifecycle.status import known_names
    if settings.name not in known_names(settings.state_root):
        raise InstanceRunningError(
            f"instance {settings.name} runs, but cf-launch did not start it (nothing "
            f"recorded under {settings.state_root})",
            f"stop it first (`apptainer instance stop {settings.name}`), or give cf-launch "
            "another NAME")


def _warn_if_asked_otherwise(started: dict[str, Any], settings: Settings,
                             hooks: tuple[str, ...], image: Path | None) -> None:
    """``start --image``/``--hook`` of a running instance: what it asked takes effect only
    with a restart; say so rather than keep quiet."""
    from coldfront_launch.cli.output import progress
    name = settings.name
    running = str(started["instance"]["image"])
    if image is not None and str(image.absolute()) != running:
        progress(f"warning: {name} runs {running}; --image {image} takes effect with "
                 f"`cf-launch restart {name} --image {image}`")
    if hooks and list(hooks) != started.get("hooks"):
        progress(f"warning: {name} runs with hooks {', '.join(started.get('hooks') or [])}; "
                 f"--hook takes effect with `cf-launch restart {name}`")


def _already_running(settings: Settings) -> dict[str, Any]:
    """``start``'s answer for an instance that runs: what status says of it."""
    from coldfront_launch.lifecycle.status import of
    data = of(settings)
    return {"instance": data["instance"], "changes": [], "timings": {},
            "ready": data["health"]["healthy"], "system_state": data["system_state"] or "",
            "failed_units": [], "url": data["url"] or "", "seconds_to_ready": None,
            "already_running": True, "health": data["health"], "hooks": data["hooks"]}


@instance_command(
    STRICT, click.option("--wait", "wait", type=Seconds(min=0, max=3600), default=10.0,
                         show_default=True,
                         help="Seconds to wait for another cf-launch working on the "
                              "instance (e.g. a first stop) before giving up (exit 7)."),
    several=True, epilog="""
        cf-launch stop                     # the instance named in the settings
        cf-launch stop coldfront cf-test   # several instances; exit: the first failure's
        cf-launch stop coldfront --json    # not running: exit 0, "already_stopped": true
    """)
def stop(ctx: click.Context, strict: bool, wait: float, as_json: bool) -> None:
    """Stop the instance and undo every host change cf-launch made."""
    from coldfront_launch.errors import NotRunningError
    launcher = launcher_of(ctx)
    name = launcher.settings.name
    try:
        timings = launcher.stop(lock_timeout=wait)
    except NotRunningError:
        if strict:
            raise
        emit({"name": name, "stopped": True, "already_stopped": True, "shutdown": None,
              "plugin_failures": [], "timings": {}}, as_json,
             lambda: click.echo(f"instance {name} is not running; nothing to stop"))
        return
    how = timings.pop("shutdown", None)
    failed = timings.pop("plugin_failures", [])
    said = {"poweroff": " (systemd inside powered off)"}.get(str(how), "")
    also = f"; {len(failed)} plugin hook(s) failed (above)" if failed else ""
    emit({"name": name, "stopped": True, "already_stopped": False, "shutdown": how,
          "plugin_failures": failed,
          "timings": {k: round(v, 4) for k, v in timings.items()}}, as_json,
         lambda: click.echo(f"instance {name} stopped{said}; host changes undone{also}"))
    if failed:  # what those plugins do on stop may not be done: say so to scripts too
        sys.exit(ExitCode.FAILURE)


@instance_command(hook_option, IMAGE_OPTION, several=True, epilog="""
    cf-launch restart coldfront
""")
def restart(ctx: click.Context, hooks: tuple[str, ...], image: Path | None,
            as_json: bool) -> None:
    """Stop (if running), then start."""
    started = launcher_of(ctx, **start_overrides(hooks, image)).restart()
    emit(started.to_json(), as_json, lambda: print_started(started.to_json()))


@instance_command(click.option("--all", "every", is_flag=True,
                              help="Every instance cf-launch started, running or not, "
                                   "as a table (a list with --json)."),
                  several=True, alone={"every": "--all"}, epilog="""
    cf-launch status coldfront          # exit 0 only when running and healthy
    cf-launch status --json | jq .health
    cf-launch status --all              # a table of every instance cf-launch started
""")
def status(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Show the instance, its address, systemd state, HTTP health and drift.

    Exits 0 only when the instance runs, systemd inside is `running` and ColdFront answers
    (2xx/3xx); else 8 (not running), 5 (start unfinished), 15 (unhealthy: the reason is
    printed) or 9 (a host change is missing)."""
    # not through Launcher: status imports only what it needs
    from coldfront_launch.lifecycle.status import of, of_all
    if every:
        from coldfront_launch.cli.table import table
        rows = of_all(settings_of(ctx))
        emit(rows, as_json, lambda: click.echo(table(rows), nl=False))
        codes = [row["health"]["exit_code"] for row in rows if row["running"]]
        if codes and any(codes):
            sys.exit(next(c for c in codes if c))
        return
    data = of(settings_of(ctx))
    emit(data, as_json, lambda: _print_status(data))
    if data["health"]["exit_code"]:
        sys.exit(data["health"]["exit_code"])


def _print_status(data: dict[str, Any]) -> None:
    if not data["running"]:
        click.echo(f"{data['name']}: not running"
                   + (f" ({data['host_changes']} host changes to undo: run `cf-launch stop`)"
                      if data["host_changes"] else ""))
        return
    inst = data["instance"]
    click.echo(f"{data['name']}: running, pid {inst['pid']}, ip {inst['ip'] or '(host)'}"
               + (f", ip6 {data['ip6']}" if data.get("ip6") else ""))
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
    for found in data.get("drift") or []:
        click.echo(f"  drift: {found} ({drift_hint(found, data['name'])})")
    if data["health"]["exit_code"] == ExitCode.UNHEALTHY:
        click.echo(f"  unhealthy: {data['health']['reason']} (`cf-launch logs "
                   f"{data['name']}` shows why)")


def drift_hint(found: str, name: str) -> str:
    """What helps with one drift line: ``repair``, or for a status read from another
    network namespace than the instance's, the ``nsenter`` line that reads it there."""
    if "network namespace" not in found or "this process runs in" not in found:
        return "`cf-launch repair` puts it back"
    from coldfront_launch.linux import netinfo
    inode = found.split("network namespace ", 1)[1].split(",", 1)[0]
    path = netinfo.netns_path(inode) or "/run/netns/NAME"
    return f"read it there: nsenter --net={path} cf-launch status {name}"


REPAIR_LOCK_WAIT = 30.0  # seconds: a supervisor's own repair holds the lock briefly


@instance_command(click.option("--all", "every", is_flag=True,
                              help="Every instance cf-launch knows."), epilog="""
    cf-launch repair coldfront   # after a firewall reload removed cf-launch's rules
    cf-launch repair --all
""")
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
            if done or not item["cannot"]:
                click.echo(f"{item['name']}: " + ("; ".join(done) or "nothing missing"))
            for found in item["cannot"]:
                click.echo(f"{item['name']}: cannot restore {found}")
    emit(results, as_json, human)
    if any(item["cannot"] for item in results):
        sys.exit(ExitCode.HOST_CHANGE)


@instance_command(hook_option, IMAGE_OPTION, epilog="""
    cf-launch plan                 # first line: the settings files it read
    cf-launch plan --hook override --json
""")
def plan(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, as_json: bool) -> None:
    """Print the exact apptainer command and every host change `start` would make."""
    from coldfront_launch.config.settings import LOCAL_CONFIG, config_files
    files = [f"./{f}" if not f.is_absolute() and f == LOCAL_CONFIG else str(f)
             for f in config_files(ctx.obj["config"])]
    result = launcher_of(ctx, **start_overrides(hooks, image)).plan()

    def human() -> None:
        import shlex
        click.echo("# settings read: " + (", ".join(files) or "none (the defaults)"))
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
    emit({"config_files": files, **result.to_json()}, as_json, human)
    if any(p.fatal for p in result.problems):
        sys.exit(ExitCode.PREFLIGHT)  # so scripts can use `plan` as a check


PWD = click.option("--pwd", default="/", show_default=True,
                   help="The folder inside the instance to run in.")


@click.command("exec", cls=names.ExecCommand, epilog=examples("""
    cf-launch exec coldfront -- systemctl status gunicorn
    cf-launch exec -- coldfront shell -c 'print(1)'   # the instance named in the settings
    cf-launch exec --name cf-test --pwd /srv/coldfront -- ls
"""))
@names.argument
@name_option
@PWD
@click.pass_context
@friendly
def exec_cmd(ctx: click.Context, pwd: str) -> None:
    """Run COMMAND inside the instance: cf-launch exec [NAME] -- COMMAND..."""
    from coldfront_launch import apptainer
    from coldfront_launch.errors import ConfigError
    command = names.command_words(ctx)
    if not command:
        raise ConfigError("COMMAND", "no command given", "cf-launch exec [NAME] -- COMMAND...")
    argv = apptainer.exec_argv(_running(_name(ctx)), list(command), pwd)
    os.execvp(argv[0], argv)


def _name(ctx: click.Context) -> str:
    """The instance's name without reading the settings when it was given."""
    given = ctx.find_root().obj.get("name")
    return str(given) if given else settings_of(ctx).name


@click.command(epilog=examples("""
    cf-launch shell coldfront
"""))
@names.argument
@name_option
@PWD
@click.pass_context
@friendly
def shell(ctx: click.Context, pwd: str) -> None:
    """Open a shell inside the instance."""
    from coldfront_launch import apptainer
    argv = apptainer.shell_argv(_running(settings_of(ctx).name), pwd)
    os.execvp(argv[0], argv)


@click.command(epilog=examples("""
    cf-launch logs coldfront -n 50
    cf-launch logs -f             # follow, like journalctl -f
"""))
@names.argument
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
    argv = apptainer.exec_argv(name, argv, "/")
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


@instance_command(hook_option, epilog="""
    cf-launch doctor              # every check, with how to fix each
    cf-launch doctor --json | jq '.problems[] | select(.fatal)'
""")
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
