"""The ``cf-launch`` command: a thin layer over :class:`~coldfront_launch.Launcher`.

Exit codes: :class:`~coldfront_launch.exitcodes.ExitCode` (and the README's table).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import LaunchError
from .exitcodes import ExitCode

if TYPE_CHECKING:  # the rest is imported by the command that needs it (startup time)
    from .builder import BuildEvent
    from .launcher import Launcher
    from .settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def _fail(err: LaunchError) -> None:
    click.secho(f"cf-launch: error: {err}", fg="red", err=True)
    if err.details:
        click.echo(err.details, err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)
    sys.exit(err.exit_code)


def friendly(func: F) -> F:
    """Turn every error into a one-line cause and a hint; never a traceback."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LaunchError as err:
            _fail(err)
        except KeyboardInterrupt:
            click.echo("cf-launch: interrupted", err=True)
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as err:  # noqa: BLE001 - the last line of defence
            if os.environ.get("CF_LAUNCH_DEBUG"):
                raise
            click.secho(f"cf-launch: internal error: {type(err).__name__}: {err}", fg="red",
                        err=True)
            click.echo("hint: rerun with CF_LAUNCH_DEBUG=1 for a traceback, and report it",
                       err=True)
            sys.exit(ExitCode.INTERNAL)
    return wrapper  # type: ignore[return-value]


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    from .settings import load_settings
    obj = ctx.obj
    return load_settings(obj["config"], name=obj["name"], state_root=obj["state_root"],
                         **overrides)


def _progress(message: str) -> None:
    click.echo(f"… {message}", err=True)


def _launcher(ctx: click.Context, **overrides: Any) -> Launcher:
    from .launcher import Launcher
    return Launcher(_settings(ctx, **overrides), report=_progress)


def _emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human()


def _decorated(decorator: Callable[[F], Any], func: F) -> F:
    """Apply a click decorator, keeping ``func``'s type for mypy."""
    result: F = decorator(func)
    return result


def _json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout (progress stays on stderr)."""
    return _decorated(click.option("--json", "as_json", is_flag=True,
                                   help="Print the result as JSON."), func)


def _name_option(func: F) -> F:
    """``--name`` after the subcommand too (``cf-launch start --name x``)."""
    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            ctx.ensure_object(dict)["name"] = value
    return _decorated(click.option("--name", expose_value=False, callback=remember,
                                   help="Instance name (overrides the global --name)."), func)


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
    from .launcher import Launcher
    from .settings import replace_build
    settings = _settings(ctx)
    raw_build: dict[str, Any] = {"fakeroot": fakeroot,
                                 "binds": tuple(binds) if binds else None,
                                 "layers": tuple(layers) if layers else None}
    if ca_bundle is not None:
        raw_build["ca_bundle"] = str(ca_bundle)
    settings = replace_build(settings, **raw_build)
    events: list[dict[str, Any]] = []
    live = sys.stderr.isatty() and not verbose
    width = shutil.get_terminal_size().columns

    def progress(event: BuildEvent) -> None:
        step = f"[{event.index}/{event.total}] {event.layer.name}"
        if event.kind == "line":
            if verbose:
                click.echo(event.text, err=True)
            elif live:
                click.echo(f"\r\033[K{step}: {event.text}"[: width + 4], nl=False, err=True)
            return
        if live:
            click.echo("\r\033[K", nl=False, err=True)
        words = {"cached": "cached, not rebuilt", "start": "building…",
                 "done": f"built in {event.seconds:.0f}s"}
        click.echo(f"{step}: {words[event.kind]} ({event.layer.key})", err=True)
        events.append({"layer": event.layer.name, "key": event.layer.key, "event": event.kind,
                       "image": str(event.layer.image),
                       "seconds": round(event.seconds, 1)})

    image = Launcher(settings).build(force=force, progress=progress)
    _emit({"image": str(image), "target": str(image.resolve()), "layers": events}, as_json,
          lambda: click.echo(f"image: {image} -> {image.resolve()}"))


def _hook_option(func: F) -> F:
    return _decorated(click.option(
        "--hook", "hooks", multiple=True,
        help="Plugin to run (repeatable); default from settings: bridge."), func)


def _start_overrides(hooks: tuple[str, ...], image: Path | None) -> dict[str, Any]:
    return {"hooks": list(hooks) if hooks else None, "image": str(image) if image else None}


@cli.command()
@_name_option
@_hook_option
@click.option("--image", type=click.Path(path_type=Path), help="The .sif to boot.")
@click.option("--no-wait", is_flag=True, help="Return once the instance runs.")
@_json_option
@click.pass_context
@friendly
def start(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, no_wait: bool,
          as_json: bool) -> None:
    """Start ColdFront: hooks prepare the host, the instance boots, then wait until ready."""
    started = _launcher(ctx, **_start_overrides(hooks, image)).start(wait=not no_wait)
    _emit(started.to_json(), as_json, lambda: _print_started(started.to_json()))


def _print_started(data: dict[str, Any]) -> None:
    inst = data["instance"]
    click.echo(f"instance {inst['name']} running (pid {inst['pid']}"
               + (f", ip {inst['ip']}" if inst["ip"] else "") + ")")
    if data["ready"]:
        click.echo(f"systemd: {data['system_state']}; ColdFront answers at {data['url']} "
                   f"({data['seconds_to_ready']}s)")
        if data["failed_units"]:
            click.echo(f"failed units: {', '.join(data['failed_units'])}")


@cli.command()
@_name_option
@_json_option
@click.pass_context
@friendly
def stop(ctx: click.Context, as_json: bool) -> None:
    """Stop the instance and undo every host change cf-launch made."""
    launcher = _launcher(ctx)
    timings = launcher.stop()
    _emit({"name": launcher.settings.name, "stopped": True,
           "timings": {k: round(v, 4) for k, v in timings.items()}}, as_json,
          lambda: click.echo(f"instance {launcher.settings.name} stopped; host changes undone"))


@cli.command()
@_name_option
@_hook_option
@click.option("--image", type=click.Path(path_type=Path), help="The .sif to boot.")
@_json_option
@click.pass_context
@friendly
def restart(ctx: click.Context, hooks: tuple[str, ...], image: Path | None,
            as_json: bool) -> None:
    """Stop (if running), then start."""
    started = _launcher(ctx, **_start_overrides(hooks, image)).restart()
    _emit(started.to_json(), as_json, lambda: _print_started(started.to_json()))


@cli.command()
@_name_option
@click.option("--all", "every", is_flag=True,
              help="Every instance cf-launch knows (state folders and running instances).")
@_json_option
@click.pass_context
@friendly
def status(ctx: click.Context, every: bool, as_json: bool) -> None:
    """Show the instance, its address, systemd state and HTTP health."""
    if every:
        _status_all(ctx, as_json)
        return
    from .status import of  # not through Launcher: status imports only what it needs
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
    _emit(data, as_json, human)
    if not data["running"] and not as_json:
        sys.exit(ExitCode.NOT_RUNNING)


def _status_all(ctx: click.Context, as_json: bool) -> None:
    """``status --all``: a table like ``podman ps``, or a JSON list; exit 0 even if none
    runs (the list says so)."""
    from .status import of_all
    from .statustable import table
    rows = of_all(_settings(ctx))
    _emit(rows, as_json, lambda: click.echo(table(rows), nl=False))


@cli.command()
@_name_option
@_hook_option
@click.option("--image", type=click.Path(path_type=Path), help="The .sif to boot.")
@_json_option
@click.pass_context
@friendly
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
    from . import plugins
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
    from . import apptainer
    argv = apptainer.exec_argv(_running(name), list(command))
    os.execvp(argv[0], argv)


@cli.command()
@_name_option
@click.pass_context
@friendly
def shell(ctx: click.Context) -> None:
    """Open a shell inside the instance."""
    from . import apptainer
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
    from . import apptainer
    name = _settings(ctx).name
    if apptainer.find(name) is None:
        _print_apptainer_logs(name, lines)
        return
    argv = ["journalctl", "--no-pager", "-n", str(lines)] + (["-f"] if follow else [])
    argv = apptainer.exec_argv(name, argv)
    os.execvp(argv[0], argv)


def _print_apptainer_logs(name: str, lines: int) -> None:
    from . import apptainer
    from .errors import NotRunningError
    found = [p for p in apptainer.log_paths(name) if p.is_file()]
    if not found:
        raise NotRunningError(f"instance {name} is not running and has no Apptainer log",
                              "start it with `cf-launch start`")
    click.echo(f"instance {name} is not running; Apptainer's log of its last start:", err=True)
    for path in found:
        click.echo(f"==> {path} <==")
        click.echo("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))


def _running(name: str) -> str:
    from . import apptainer
    from .errors import NotRunningError
    from .validate import instance_name
    instance_name("NAME", name)
    if apptainer.find(name) is None:
        raise NotRunningError(f"instance {name} is not running", "start it with `cf-launch start`")
    return name


@cli.command()
@_name_option
@_json_option
@click.pass_context
@friendly
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the host and settings; say what is wrong and how to fix it."""
    problems = _launcher(ctx).doctor()

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


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM becomes an orderly exit, so a start in progress undoes what it did."""
    raise SystemExit(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="cf-launch")


if __name__ == "__main__":
    main()
