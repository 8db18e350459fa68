"""The ``cf-launch`` command: the group, its global options and ``main``. Each command is
a thin layer over the library (mostly :class:`~coldfront_launch.Launcher`), in a module by
what the admin acts on: instance, image, embed, service, data, manage, plugins.

Exit codes: :class:`~coldfront_launch.exitcodes.ExitCode` (and the table in docs/cli.md).
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import NoReturn

import click

from coldfront_launch.cli import (
    data,
    embed,
    image,
    info,
    instance,
    manage,
    names,
    output,
    plugins,
    service,
)
from coldfront_launch.cli.common import Choice, examples
from coldfront_launch.errors import Terminated

#: click 8.2+'s "no arguments: show the help" (8.1 shows it without an exception).
HELP_ONLY: tuple[type[BaseException], ...] = tuple(
    c for c in (getattr(click.exceptions, "NoArgsIsHelpError", None),) if c is not None)


class CfLaunch(click.Group):  # type: ignore[misc]  # click is not type-checked here
    """The group: with ``--json``, a refused command line (an unknown option, a bad value,
    an extra argument) is a JSON error object on stdout too."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HELP_ONLY:
            raise  # `cf-launch` alone, `cf-launch service`: click shows the help
        except click.ClickException as err:
            _refusal(err, ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Whether the command line asks for JSON, read first: then a refusal of the
        group's own options (``--color``, ``--config``…) is JSON too."""
        output.current().json = output.wants_json(args)
        try:
            rest: list[str] = super().parse_args(ctx, args)
            return rest
        except HELP_ONLY:
            raise  # `cf-launch` alone, `cf-launch service`: click shows the help
        except click.ClickException as err:
            _refusal(err, ctx)


def _refusal(err: click.ClickException, ctx: click.Context) -> NoReturn:
    """A refused command line (an unknown option, a missing or extra argument, a bad
    value): cf-launch's one red line and a hint, as for every other error (not click's
    usage block); with ``--json`` also the JSON error object."""
    from coldfront_launch.cli.common import BadValue
    where = err.ctx if getattr(err, "ctx", None) is not None else ctx
    message = err.one_line() if isinstance(err, BadValue) else err.format_message()
    output.error(message, f"see `{where.command_path} --help`", err.exit_code)
    sys.exit(err.exit_code)


@click.group(cls=CfLaunch, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=examples("""
                cf-launch start                      # build if needed, boot, wait until ready
                cf-launch status coldfront --json    # exit 0 only when running and healthy
                cf-launch stop coldfront cf-test     # several instances
                cf-launch config show                # the settings, and where each came from
             """))
@click.option("--config", "config", type=click.Path(path_type=Path),
              help="TOML settings; overrides ./cf-launch.toml and /etc/cf-launch/config.toml.")
@click.option("--name", help="Instance name (default: coldfront); the verbs also take it "
              "as NAME.", shell_complete=names.complete)
@click.option("--state-root", type=click.Path(path_type=Path),
              help="Where instance state lives (default: /var/lib/cf-launch).")
@click.option("--color", "color", type=Choice(["auto", "always", "never"]), default="auto",
              show_default=True, help="Colour in messages (NO_COLOR=1 means never).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@click.version_option(package_name="coldfront-launch")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, name: str | None,
        state_root: Path | None, color: str, quiet: bool) -> None:
    """Build, boot and network ColdFront in an Apptainer instance."""
    out = output.current()
    out.quiet = out.quiet or quiet
    ctx.color = output.color_choice(color)
    output.CHOSEN[:] = [ctx.color]
    ctx.obj = {"config": config, "name": name, "state_root": state_root,
               "name_source": "--name before the verb" if name is not None else None}


for _module in (instance, image, embed, service, data, manage, plugins, info):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM becomes an orderly exit, so a start in progress undoes what it did."""
    raise Terminated(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="cf-launch")

