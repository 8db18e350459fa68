"""The ``cf-launch`` command: the group, its global options and ``main``. Each command is
a thin layer over the library (mostly :class:`~coldfront_launch.Launcher`), in a module by
what the admin acts on: instance, image, embed, service, data, manage, plugins.

Exit codes: :class:`~coldfront_launch.exitcodes.ExitCode` (and the README's table).
"""

from __future__ import annotations

import signal
from pathlib import Path

import click

from coldfront_launch.cli import data, embed, image, instance, manage, plugins, service
from coldfront_launch.errors import Terminated


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


for _module in (instance, image, embed, service, data, manage, plugins):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM becomes an orderly exit, so a start in progress undoes what it did."""
    raise Terminated(128 + signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="cf-launch")

