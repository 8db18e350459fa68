"""``cf-launch prepare``, ``attach`` and ``detach``: cf-launch's network in a site's own
``apptainer instance start`` (docs/embedding.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from coldfront_launch.cli import names
from coldfront_launch.cli.common import (
    Choice,
    emit,
    examples,
    friendly,
    hook_option,
    json_option,
    launcher_of,
    name_option,
    print_started,
    start_overrides,
)
from coldfront_launch.exitcodes import ExitCode
from coldfront_launch.lifecycle import embedding as embed


@click.command(epilog=examples("""
    eval "set -- $(cf-launch prepare coldfront)"; apptainer instance start "$@" IMAGE coldfront
    cf-launch prepare coldfront --json              # the same as --format json
    cf-launch prepare --format env --output /run/cf-launch/coldfront.env
"""))
@names.argument
@name_option
@hook_option
@click.option("--image", type=click.Path(path_type=Path), help="The .sif the site boots.")
@click.option("--format", "form", type=Choice(embed.FORMATS), default="shell",
              show_default=True, help="shell: one line of words; json; env: a file for a "
              "unit's EnvironmentFile=.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--output", type=click.Path(path_type=Path),
              help="Write to FILE (atomically) instead of stdout.")
@click.option("--only-hooks", is_flag=True,
              help="Only the plugins' options (an image cf-launch did not build).")
@click.pass_context
@friendly
def prepare(ctx: click.Context, hooks: tuple[str, ...], image: Path | None, form: str,
            as_json: bool, output: Path | None, only_hooks: bool) -> None:
    """Prepare the host; print the options for your own `apptainer instance start`."""
    from coldfront_launch.errors import ConfigError
    if as_json:
        if ctx.get_parameter_source("form") == click.core.ParameterSource.COMMANDLINE \
                and form != "json":
            raise ConfigError("--json", f"is --format json; --format {form} says otherwise",
                              "give one of them")
        form = "json"
    launcher = launcher_of(ctx, **start_overrides(hooks, image))

    def printable(embedding: embed.Embedding) -> None:
        embed.render(embedding, form)  # refuses (e.g. spaces for env) before any change

    text = embed.render(launcher.prepare(only_hooks=only_hooks, check=printable), form)
    if output is not None:
        embed.write_output(output, text)
        click.echo(f"… options written to {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command(epilog=examples("""
    cf-launch attach coldfront     # after your own `apptainer instance start`
"""))
@names.argument
@name_option
@click.option("--no-wait", is_flag=True, help="Return once the host is finished.")
@json_option
@click.pass_context
@friendly
def attach(ctx: click.Context, no_wait: bool, as_json: bool) -> None:
    """Finish the host for an instance you started with the prepared options."""
    started = launcher_of(ctx).attach(wait=not no_wait)
    emit(started.to_json(), as_json, lambda: print_started(started.to_json()))


@click.command(epilog=examples("""
    apptainer instance stop coldfront && cf-launch detach coldfront
"""))
@names.argument
@name_option
@json_option
@click.pass_context
@friendly
def detach(ctx: click.Context, as_json: bool) -> None:
    """Undo what prepare and attach changed (never stops the instance)."""
    result = launcher_of(ctx).detach()
    failed = result["plugin_failures"]
    also = f"; {len(failed)} plugin hook(s) failed (above)" if failed else ""
    emit(result, as_json, lambda: click.echo(f"{result['name']}: host changes undone{also}"))
    if failed:
        sys.exit(ExitCode.FAILURE)


COMMANDS = (prepare, attach, detach)
