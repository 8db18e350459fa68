"""``cf-launch prepare``, ``attach``, ``detach`` and ``service dropin``: cf-launch's
network in a site's own ``apptainer instance start`` (docs/embedding.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from . import embed
from .clitools import (
    emit,
    friendly,
    hook_option,
    json_option,
    launcher_of,
    name_option,
    print_started,
    settings_of,
    start_overrides,
)

RUN_DIR = Path("/run/cf-launch")


@click.command()
@name_option
@hook_option
@click.option("--image", type=click.Path(path_type=Path), help="The .sif the site boots.")
@click.option("--format", "form", type=click.Choice(embed.FORMATS), default="shell",
              show_default=True, help="shell: one line of words; json; env: a file for a "
              "unit's EnvironmentFile=.")
@click.option("--output", type=click.Path(path_type=Path),
              help="Write to FILE (atomically) instead of stdout.")
@click.option("--only-hooks", is_flag=True,
              help="Only the plugins' options (an image cf-launch did not build).")
@click.pass_context
@friendly
def prepare(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, form: str,
            output: Path | None, only_hooks: bool) -> None:
    """Prepare the host; print the options for your own `apptainer instance start`."""
    launcher = launcher_of(ctx, **start_overrides(hooks, image))

    def printable(embedding: embed.Embedding) -> None:
        embed.render(embedding, form)  # refuses (e.g. spaces for env) before any change

    text = embed.render(launcher.prepare(only_hooks=only_hooks, check=printable), form)
    if output is not None:
        embed.write_output(output, text)
        click.echo(f"… options written to {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command()
@name_option
@click.option("--no-wait", is_flag=True, help="Return once the host is finished.")
@json_option
@click.pass_context
@friendly
def attach(ctx: click.Context, no_wait: bool, as_json: bool) -> None:
    """Finish the host for an instance you started with the prepared options."""
    started = launcher_of(ctx).attach(wait=not no_wait)
    emit(started.to_json(), as_json, lambda: print_started(started.to_json()))


@click.command()
@name_option
@json_option
@click.pass_context
@friendly
def detach(ctx: click.Context, as_json: bool) -> None:
    """Undo what prepare and attach changed (never stops the instance)."""
    result = launcher_of(ctx).detach()
    emit(result, as_json, lambda: click.echo(f"{result['name']}: host changes undone"))


@click.group()
def service() -> None:
    """systemd units for cf-launch."""


@service.command("dropin")
@click.option("--unit", required=True, help="The site's unit, e.g. coldfront.service.")
@name_option
@hook_option
@click.pass_context
@friendly
def service_dropin(ctx: click.Context, unit: str, hooks: tuple[str, ...]) -> None:
    """Print a drop-in that adds cf-launch's network to an existing unit."""
    from .errors import ConfigError

    if not unit.endswith(".service") or "/" in unit or unit.startswith("."):
        raise ConfigError("--unit", f"{unit!r} is not a service unit name",
                          "e.g. --unit coldfront.service")
    settings = settings_of(ctx, **start_overrides(hooks, None))
    obj: dict[str, Any] = ctx.obj
    command = [str(Path(sys.argv[0]).resolve()) if sys.argv[0].endswith("cf-launch")
               else "cf-launch"]
    if obj.get("config"):
        command += ["--config", str(Path(obj["config"]).resolve())]
    if obj.get("state_root"):
        command += ["--state-root", str(settings.state_root)]
    click.echo(embed.dropin(unit, command, settings.name, settings.hooks,
                            RUN_DIR / f"{settings.name}.env", settings.ready_timeout),
               nl=False)


COMMANDS = (prepare, attach, detach, service)
