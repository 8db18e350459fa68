"""The commands about the image: ``build`` it from the layered definitions, ``upgrade``
an instance to a new one (a backup first, a rollback if it does not answer;
docs/production.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from coldfront_launch.cli import names
from coldfront_launch.cli.common import (
    Seconds,
    build_printer,
    emit,
    examples,
    friendly,
    json_option,
    name_option,
    progress,
    settings_of,
)


@click.command(epilog=examples("""
    cf-launch build                     # layers cached by content: only changes rebuild
    cf-launch build --layer debian-base --layer coldfront --fakeroot
"""))
@click.option("--force", is_flag=True, help="Rebuild every layer, cached or not.")
@click.option("--fakeroot/--no-fakeroot", default=None, help="Build with --fakeroot.")
@click.option("--bind", "binds", multiple=True, help="Extra --bind for %post (repeatable).")
@click.option("--ca-bundle", type=click.Path(path_type=Path),
              help="CA bundle that %post trusts (TLS-intercepting proxies).")
@click.option("--layer", "layers", multiple=True, help="Layer stack, base first (repeatable).")
@click.option("-v", "--verbose", is_flag=True, help="Show all of Apptainer's output.")
@json_option
@click.pass_context
@friendly
def build(ctx: click.Context, force: bool, fakeroot: bool | None, binds: tuple[str, ...],
          ca_bundle: Path | None, layers: tuple[str, ...], verbose: bool,
          as_json: bool) -> None:
    """Build the ColdFront image from layered definitions (cached by content)."""
    from coldfront_launch.config.settings import replace_build
    from coldfront_launch.lifecycle.launcher import Launcher
    from coldfront_launch.state.pin import held_back
    settings = settings_of(ctx)
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
    emit({"image": str(image), "target": str(image.resolve()), "layers": events,
           "held_back": held}, as_json,
          lambda: click.echo(f"image: {image} -> {image.resolve()}"))


@click.command(epilog=examples("""
    cf-launch upgrade coldfront --check                 # which ColdFront it would bring
    cf-launch upgrade coldfront --coldfront-version 1.1.7
    cf-launch upgrade coldfront --rollback
"""))
@names.argument
@name_option
@click.option("--coldfront-version", metavar="VERSION",
              help="The ColdFront to build (default: [build] coldfront_version, else the "
                   "newest on the package index).")
@click.option("--image", type=click.Path(path_type=Path),
              help="Upgrade to this ready-made image instead of building one.")
@click.option("--ready-timeout", type=Seconds(min=1, max=1e9), metavar="SECONDS",
              help="How long the new image may take to answer (default: ready_timeout).")
@click.option("--check", is_flag=True,
              help="Only say which ColdFront an upgrade would bring; build and change nothing.")
@click.option("--rollback", is_flag=True,
              help="Go back to the image from before the last upgrade, with the data of the "
                   "backup taken then (what was written since is kept beside it).")
@click.option("-v", "--verbose", is_flag=True, help="Show all of the build's output.")
@json_option
@click.pass_context
@friendly
def upgrade(ctx: click.Context, coldfront_version: str | None, image: Path | None,
            ready_timeout: float | None, check: bool, rollback: bool, verbose: bool,
            as_json: bool) -> None:
    """Build the new image, back up, boot it and wait until it answers; if it never does,
    roll back to the previous image and the data from before."""
    from coldfront_launch.config.settings import coldfront_version as checked_version
    from coldfront_launch.errors import ConfigError
    from coldfront_launch.operations.upgrade import Request
    from coldfront_launch.operations.upgrade import upgrade as run_upgrade

    if coldfront_version is not None and image is not None:
        raise ConfigError("--image", "give --coldfront-version or --image, not both")
    if rollback and (coldfront_version is not None or image is not None or check):
        raise ConfigError("--rollback", "goes back to the image from before the last upgrade; "
                          "it takes no --coldfront-version, --image or --check")
    if coldfront_version is not None:
        checked_version("--coldfront-version", coldfront_version)
    events: list[dict[str, Any]] = []
    result = run_upgrade(settings_of(ctx),
                         Request(coldfront_version, image and image.absolute(), ready_timeout,
                                 check, rollback),
                         report=progress, progress=build_printer(verbose, events))
    result["layers"] = events

    def human() -> None:
        before, after = result["from"], result["to"]
        if rollback:
            click.echo(f"{result['name']}: rolled back to ColdFront "
                       f"{after['coldfront_version']} ({after['image']})")
            for aside in result["kept"].values():
                click.echo(f"  kept: {aside}")
        elif check:
            click.echo(f"{result['name']}: ColdFront {before['coldfront_version']}; "
                       + (f"{after['coldfront_version']} available" if result["available"]
                          else "up to date"))
        elif result["upgraded"]:
            click.echo(f"{result['name']}: ColdFront {before['coldfront_version']} -> "
                       f"{after['coldfront_version']} ({after['image']})")
        else:
            click.echo(f"{result['name']}: already on ColdFront {after['coldfront_version']}")
    emit(result, as_json, human)


COMMANDS = (build, upgrade)
