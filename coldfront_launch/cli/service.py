"""``cf-launch run`` and ``cf-launch service``: ColdFront as a host service under systemd
(docs/service.md), and a drop-in for a site's own unit (docs/embedding.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from coldfront_launch.cli import names
from coldfront_launch.cli.common import (
    Seconds,
    examples,
    friendly,
    hook_option,
    launcher_of,
    name_option,
    settings_of,
    start_overrides,
)
from coldfront_launch.errors import LaunchError
from coldfront_launch.lifecycle import embedding as embed
from coldfront_launch.service import units

RUN_DIR = Path("/run/cf-launch")


@click.command(epilog=examples("""
    cf-launch run coldfront          # what cf-launch@coldfront.service runs
"""))
@names.argument
@name_option
@hook_option
@click.option("--interval", type=Seconds(min=0.1, max=3600), default=2.0, show_default=True,
              metavar="SECONDS",
              help="Seconds between checks that the instance still runs.")
@click.pass_context
@friendly
def run(ctx: click.Context, hooks: tuple[str, ...], interval: float) -> None:
    """Start ColdFront and supervise it in the foreground (systemd Type=notify)."""
    from coldfront_launch.service.supervisor import run as supervise

    sys.exit(supervise(launcher_of(ctx, **start_overrides(hooks, None)), interval))


def cf_launch_command(ctx: click.Context) -> list[str]:
    """How a unit runs this cf-launch, with this config fixed."""
    obj: dict[str, Any] = ctx.obj
    executable = Path(sys.argv[0]).resolve()
    command = [str(executable) if executable.name == "cf-launch" else "cf-launch"]
    if obj.get("config"):
        command += ["--config", str(Path(obj["config"]).resolve())]
    if obj.get("state_root"):
        command += ["--state-root", str(Path(obj["state_root"]).resolve())]
    return command


@click.group()
def service() -> None:
    """systemd units for cf-launch."""


@service.command("dropin", epilog=examples("""
    cf-launch service dropin --unit coldfront.service --hook bridge
"""))
@click.option("--unit", required=True, help="The site's unit, e.g. coldfront.service.")
@name_option
@hook_option
@click.pass_context
@friendly
def service_dropin(ctx: click.Context, unit: str, hooks: tuple[str, ...]) -> None:
    """Print a drop-in that adds cf-launch's network to an existing unit."""
    from coldfront_launch.errors import ConfigError

    if not unit.endswith(".service") or "/" in unit or unit.startswith("."):
        raise ConfigError("--unit", f"{unit!r} is not a service unit name",
                          "e.g. --unit coldfront.service")
    settings = settings_of(ctx, **start_overrides(hooks, None))
    click.echo(embed.dropin(unit, cf_launch_command(ctx), settings.name, settings.hooks,
                            RUN_DIR / f"{settings.name}.env", settings.ready_timeout),
               nl=False)



def _systemctl(*argv: str) -> None:
    try:
        result = subprocess.run(["systemctl", *argv], capture_output=True, text=True,
                                check=False)
    except FileNotFoundError:
        raise LaunchError("systemctl is not installed", "use --print and your own "
                          "configuration management") from None
    if result.returncode != 0:
        raise LaunchError(f"systemctl {' '.join(argv)} failed: {result.stderr.strip()}",
                          "is systemd the init system here?")


REPAIR_UNIT_OPTION = click.option(
    "--repair-unit", "repair", is_flag=True,
    help=f"The {units.REPAIR_UNIT} oneshot (repair --all after the firewall service "
         "starts, restarts or reloads) instead of the supervisor's template.")


@service.command("install", epilog=examples("""
    cf-launch service install --enable --now     # then: systemctl start cf-launch@coldfront
    cf-launch service install --repair-unit --enable
"""))
@name_option
@REPAIR_UNIT_OPTION
@click.option("--enable", is_flag=True, help="Start at boot (systemctl enable).")
@click.option("--now", is_flag=True, help="And start it now.")
@click.option("--print", "show", is_flag=True, help="Print the unit; change nothing.")
@click.option("--unit-dir", type=click.Path(path_type=Path), default=units.UNIT_DIR,
              show_default=True, help="Where to write the unit.")
@click.pass_context
@friendly
def service_install(ctx: click.Context, repair: bool, enable: bool, now: bool, show: bool,
                    unit_dir: Path) -> None:
    """Write the cf-launch@.service template (runs `cf-launch run --name %i`), or with
    --repair-unit the cf-launch-repair.service oneshot."""
    settings = settings_of(ctx)
    text = units.repair_unit_text(cf_launch_command(ctx)) if repair \
        else units.unit_text(cf_launch_command(ctx), settings)
    if show:
        click.echo(text, nl=False)
        return
    path = units.unit_path(unit_dir, repair)
    embed.write_output(path, text)
    click.echo(f"wrote {path}", err=True)
    if unit_dir == units.UNIT_DIR:
        _systemctl("daemon-reload")
    if enable or now:
        unit = units.REPAIR_UNIT if repair else f"cf-launch@{settings.name}"
        _systemctl("enable", *(["--now"] if now else []), unit)
        click.echo(f"{unit} enabled" + (" and started" if now else ""), err=True)


@service.command("remove", epilog=examples("""
    cf-launch service remove
"""))
@name_option
@REPAIR_UNIT_OPTION
@click.option("--unit-dir", type=click.Path(path_type=Path), default=units.UNIT_DIR,
              show_default=True, help="Where the unit is.")
@click.pass_context
@friendly
def service_remove(ctx: click.Context, repair: bool, unit_dir: Path) -> None:
    """Stop and disable cf-launch@NAME, and remove the template if nothing else uses it
    (with --repair-unit: disable and remove cf-launch-repair.service)."""
    settings = settings_of(ctx)
    path = units.unit_path(unit_dir, repair)
    if not path.exists():
        raise LaunchError(f"{path} does not exist", "nothing to remove")
    if unit_dir == units.UNIT_DIR:
        _systemctl("disable", "--now", units.REPAIR_UNIT if repair
                   else f"cf-launch@{settings.name}")
    path.unlink()
    if unit_dir == units.UNIT_DIR:
        _systemctl("daemon-reload")
    click.echo(f"removed {path}", err=True)


COMMANDS = (run, service)
