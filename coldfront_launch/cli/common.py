"""What every ``cf-launch`` command shares: one-line errors, the common options, JSON
output, and the launcher built from the global options (imported on first use, so that
``--help`` loads no plugin machinery)."""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from coldfront_launch.cli import names, output
from coldfront_launch.errors import LaunchError, Terminated
from coldfront_launch.exitcodes import ExitCode

if TYPE_CHECKING:  # imported by the commands that use them: `--help` stays fast
    from coldfront_launch.config.settings import Settings
    from coldfront_launch.lifecycle.launcher import Launcher

F = TypeVar("F", bound=Callable[..., Any])


def fail(err: LaunchError) -> None:
    output.error(str(err), err.hint, err.exit_code, err.details)
    sys.exit(err.exit_code)


def friendly(func: F) -> F:
    """Turn every error into a one-line cause and a hint; never a traceback."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LaunchError as err:
            fail(err)
        except Terminated as err:
            output.error("terminated (SIGTERM)", "what was in progress was undone",
                         ExitCode.TERMINATED)
            raise err
        except BrokenPipeError:  # `cf-launch ... | head`: the reader has all it wants
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.FAILURE)
        except KeyboardInterrupt:
            output.error("interrupted", "", ExitCode.INTERRUPTED)
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as err:  # noqa: BLE001 - the last line of defence
            if os.environ.get("CF_LAUNCH_DEBUG"):
                raise
            output.error(f"internal error: {type(err).__name__}: {err}",
                         "rerun with CF_LAUNCH_DEBUG=1 for a traceback, and report it",
                         ExitCode.INTERNAL)
            sys.exit(ExitCode.INTERNAL)
    return wrapper  # type: ignore[return-value]


def settings_of(ctx: click.Context, **overrides: Any) -> Settings:
    from coldfront_launch.config.settings import load_settings
    obj = ctx.obj
    return load_settings(obj["config"], name=obj["name"], state_root=obj["state_root"],
                         **overrides)


progress = output.progress


def launcher_of(ctx: click.Context, **overrides: Any) -> Launcher:
    from coldfront_launch.lifecycle.launcher import Launcher
    return Launcher(settings_of(ctx, **overrides), report=progress)


def emit(data: Any, as_json: bool, human: Callable[[], None]) -> None:
    if as_json:
        output.result(data)
    else:
        human()


def decorated(decorator: Callable[[F], Any], func: F) -> F:
    """Apply a click decorator, keeping ``func``'s type for mypy."""
    result: F = decorator(func)
    return result


def json_option(func: F) -> F:
    """``--json``: machine-readable output on stdout (progress stays on stderr)."""
    return decorated(click.option("--json", "as_json", is_flag=True,
                                   help="Print the result as JSON."), func)


name_option = names.option


def quiet_option(func: F) -> F:
    """``-q`` after the verb too (``cf-launch stop -q``)."""
    def remember(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            output.current().quiet = True
    return decorated(click.option("-q", "--quiet", is_flag=True, expose_value=False,
                                  callback=remember, help="No progress lines (results, "
                                  "warnings and errors still shown)."), func)


def hook_option(func: F) -> F:
    return decorated(click.option(
        "--hook", "hooks", multiple=True,
        help="Plugin to run (repeatable); default from settings: bridge."), func)


def start_overrides(hooks: tuple[str, ...], image: Path | None) -> dict[str, Any]:
    return {"hooks": list(hooks) if hooks else None, "image": str(image) if image else None}


def print_started(data: dict[str, Any]) -> None:
    inst = data["instance"]
    already = " already" if data.get("already_running") else ""
    click.echo(f"instance {inst['name']}{already} running (pid {inst['pid']}"
               + (f", ip {inst['ip']}" if inst["ip"] else "") + ")"
               + ("; nothing to start" if already else ""))
    if already:
        health = data["health"]
        if health["healthy"]:
            click.echo(f"systemd: {data['system_state']}; ColdFront answers at {data['url']}")
        else:
            click.echo(f"warning: it is not healthy: {health['reason']} (`cf-launch status`"
                       f" {inst['name']}; `cf-launch restart {inst['name']}`)", err=True)
        return
    if data["ready"]:
        click.echo(f"systemd: {data['system_state']}; ColdFront answers at {data['url']} "
                   f"({data['seconds_to_ready']}s)")
        if data["failed_units"]:
            click.echo(f"failed units: {', '.join(data['failed_units'])}")


class BadValue(click.BadParameter):  # type: ignore[misc]  # click is not type-checked here
    """An option's value refused while the command line is read, before anything runs:
    shown as cf-launch's one-line error and hint, exit 2."""

    exit_code = ExitCode.CONFIG

    def one_line(self) -> str:
        """``OPTION: why``, as cf-launch prints it (also in ``--json``'s error object)."""
        opts = list(getattr(self.param, "opts", None) or [])
        if getattr(self.param, "param_type_name", "") == "argument":
            name = self.param.human_readable_name.strip("[].")
        else:
            name = max(opts, key=len) if opts else (self.param_hint or "value")
        return f"{name}: {self.message}"

    def show(self, file: Any = None) -> None:
        # shown after click has left the command's context: the colour chosen is kept
        click.secho(f"cf-launch: error: {self.one_line()}", fg="red", err=True,
                    color=output.color())
        where = self.ctx.command_path if self.ctx is not None else "cf-launch"
        click.echo(f"hint: see `{where} --help`", err=True)


class _Refusing:
    """A click type whose refusals are :class:`BadValue` (cf-launch's error format)."""

    def fail(self, message: str, param: Any = None, ctx: Any = None) -> NoReturn:
        raise BadValue(message, ctx, param)


class IntRange(_Refusing, click.IntRange):  # type: ignore[misc]  # click is not type-checked here
    """A whole number within bounds."""

    name = "integer"


class Choice(_Refusing, click.Choice):  # type: ignore[misc]  # click is not type-checked here
    """One of a list of words."""


class Seconds(_Refusing, click.FloatRange):  # type: ignore[misc]  # click is not type-checked here
    """A finite number of seconds within bounds (``nan`` and ``inf`` refused)."""

    name = "number"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{number} is not a number of seconds", param, ctx)
        return number


IMAGE_OPTION = click.option("--image", type=click.Path(path_type=Path),
                            help="The .sif to boot.")


def instance_command(*options: Callable[..., Any], several: bool = False,
                     epilog: str = "", alone: dict[str, str] | None = None
                     ) -> Callable[[Callable[..., Any]], click.Command]:
    """A command for one instance: ``[NAME]`` (``several``: ``[NAME]...``, the command run
    once per name), ``--name``, then ``options``, then ``--json`` and ``-q``; the click
    context first, one-line errors, and ``epilog`` (examples) at the end of ``--help``."""
    def wrap(func: Callable[..., Any]) -> click.Command:
        decorated: Any = friendly(func)
        if several:
            decorated = names.each(decorated, alone)
        decorated = click.pass_context(decorated)
        chain: list[Callable[..., Any]] = [names.arguments if several else names.argument,
                                           name_option, *options, json_option, quiet_option]
        for option in reversed(chain):
            decorated = option(decorated)
        command: click.Command = click.command(epilog=examples(epilog))(decorated)
        return command
    return wrap


def examples(text: str) -> str:
    """A ``--help`` epilog of example lines, kept as written (click's ``\b``)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines) if lines else ""


def build_printer(verbose: bool, events: list[dict[str, Any]]) -> Callable[[Any], None]:
    """Print a build's progress (:class:`~coldfront_launch.apptainer.layers.BuildEvent`) on
    stderr: a live line on a terminal, every line with ``verbose``; collect each step in
    ``events``."""
    live = sys.stderr.isatty() and not verbose
    width = shutil.get_terminal_size().columns

    def progress(event: Any) -> None:
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
                       "image": str(event.layer.image), "seconds": round(event.seconds, 1)})
    return progress
