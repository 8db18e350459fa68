"""``cf-launch backup`` and ``cf-launch restore``: the site's data (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path

import click

from coldfront_launch.cli import common, names


@click.command(epilog=common.examples("""
    cf-launch backup coldfront
    cf-launch backup coldfront --output /backups/ --json
"""))
@names.argument
@common.name_option
@click.option("--output", type=click.Path(),  # a str: DIR/ keeps its slash
              help="The archive to write (a regular file is replaced), or a folder for "
                   "it; DIR/ makes the folder DIR if it is missing "
                   "(default: <state_root>/NAME/backups/NAME-<UTC time>.tar.gz).")
@common.json_option
@click.pass_context
@common.friendly
def backup(ctx: click.Context, output: str | None, as_json: bool) -> None:
    """Back up ColdFront's database (online), env file and certificates into one .tar.gz."""
    from coldfront_launch.operations.backup import backup as run_backup

    result = run_backup(common.settings_of(ctx), output, report=common.progress)
    common.emit(result, as_json, lambda: click.echo(result["path"]))


class RestoreCommand(click.Command):  # type: ignore[misc]  # click is not type-checked here
    """``restore [NAME] ARCHIVE``: with two words the first is the instance's name."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words = [i for i, a in enumerate(args) if not a.startswith("-")
                 and (i == 0 or args[i - 1] != "--name")]
        name = ""
        if len(words) >= 2:
            name = args[words[0]]
            args = args[:words[0]] + args[words[0] + 1:]
        left: list[str] = super().parse_args(ctx, args)
        if name:  # refused (exit 2) while the command line is read, like any NAME
            names.use(ctx, name, "NAME")
        return left


@click.command(cls=RestoreCommand, epilog=common.examples("""
    cf-launch restore coldfront /backups/coldfront-20261204T120000Z.tar.gz
    cf-launch restore --name cf-test backup.tar.gz --force
"""))
@click.argument("archive", type=click.Path(path_type=Path), metavar="[NAME] ARCHIVE")
@common.name_option
@click.option("--force", is_flag=True,
              help="Replace existing data (kept beside it as <name>.replaced-<UTC time>).")
@common.json_option
@click.pass_context
@common.friendly
def restore(ctx: click.Context, archive: Path, force: bool, as_json: bool) -> None:
    """Check a backup, then restore it into the stopped instance."""
    from coldfront_launch.operations.restore import restore as run_restore

    result = run_restore(common.settings_of(ctx), archive, force, report=common.progress)

    def human() -> None:
        click.echo(f"{result['name']}: restored from {result['archive']} "
                   f"(integrity_check: {result['integrity_check']})")
        for item, aside in result["replaced"].items():
            click.echo(f"  replaced {item}: kept as {aside}")
    common.emit(result, as_json, human)


COMMANDS = (backup, restore)
