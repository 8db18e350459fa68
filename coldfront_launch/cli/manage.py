"""``cf-launch manage`` and ``cf-launch admin create``: Django management inside a running
instance, as the service account (docs/production.md)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from coldfront_launch.cli import names
from coldfront_launch.cli.common import (
    emit,
    examples,
    friendly,
    json_option,
    name_option,
    settings_of,
)
from coldfront_launch.coldfront import manage as site_manage
from coldfront_launch.errors import LaunchError


@click.command("manage", cls=names.ManageCommand, epilog=examples("""
    cf-launch manage coldfront -- showmigrations
    cf-launch manage -- check --deploy        # the instance named in the settings
"""))
@names.argument
@name_option
@click.pass_context
@friendly
def manage_cmd(ctx: click.Context) -> None:
    """Run `coldfront ARGS` (Django management) inside the instance, as the service
    account with the instance's env: cf-launch manage [NAME] -- ARGS..."""
    from coldfront_launch.errors import ConfigError
    args = names.command_words(ctx)
    if not args:
        raise ConfigError("ARGS", "no management command given",
                          "cf-launch manage [NAME] -- ARGS...")
    argv = site_manage.manage_argv(settings_of(ctx).name, list(args))
    os.execvp(argv[0], argv)


@click.group()
def admin() -> None:
    """ColdFront's administrator accounts."""


@admin.command("create", epilog=examples("""
    cf-launch admin create coldfront --username ops --email ops@example.org \\
        --password-file /root/ops.pw --exist-ok
"""))
@names.argument
@name_option
@click.option("--username", required=True, help="The new superuser's user name.")
@click.option("--email", required=True, help="Their e-mail address.")
@click.option("--password-file", type=click.Path(path_type=Path),
              help="A file holding the password (one line); without it the account has no "
                   "usable password.")
@click.option("--exist-ok", is_flag=True, help="An existing user is not an error (exit 0).")
@json_option
@click.pass_context
@friendly
def admin_create(ctx: click.Context, username: str, email: str, password_file: Path | None,
                 exist_ok: bool, as_json: bool) -> None:
    """Create a ColdFront superuser; idempotent with --exist-ok."""
    name = settings_of(ctx).name
    result = site_manage.create_admin(name, username, email, password_file)
    if not result.created and not exist_ok:
        raise LaunchError(f"user {username} already exists in {name}"
                          + ("" if result.superuser else " (and is not a superuser)"),
                          "nothing was changed; add --exist-ok to accept an existing user")

    def human() -> None:
        if result.created:
            click.echo(f"superuser {username} created in {name}")
        else:
            click.echo(f"user {username} already exists in {name}"
                       + ("" if result.superuser else " (not a superuser)")
                       + "; nothing changed")
    emit(result.to_json(), as_json, human)


COMMANDS = (manage_cmd, admin)
