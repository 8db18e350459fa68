"""Instance names on the command line: ``cf-launch stop NAME``, ``stop a b``, ``--name``
(before or after the verb) as a synonym, the settings' name when none is given, and shell
completion of the names cf-launch knows."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from click.shell_completion import CompletionItem

from coldfront_launch.cli import output

F = TypeVar("F", bound=Callable[..., Any])


def complete(ctx: click.Context, _param: click.Parameter, incomplete: str
             ) -> list[CompletionItem]:
    """The instances cf-launch started under the state root (``--state-root`` if given)."""
    from coldfront_launch.config.settings import DEFAULT_STATE_ROOT
    from coldfront_launch.lifecycle.status import known_names
    root = (ctx.find_root().params.get("state_root") or DEFAULT_STATE_ROOT)
    return [CompletionItem(n) for n in known_names(Path(root)) if n.startswith(incomplete)]


def check(value: str) -> str:
    """A valid instance name, or cf-launch's one-line refusal (exit 2)."""
    from coldfront_launch.cli.common import BadValue
    from coldfront_launch.config.validate import INSTANCE_NAME
    if not INSTANCE_NAME.fullmatch(value):
        raise BadValue(f"{value!r} is not a valid instance name (letters, digits, '_', '.' "
                       "and '-', starting with a letter or digit)")
    return value


def use(ctx: click.Context, value: str, source: str) -> None:
    """Make ``value`` the instance this command acts on; two different names, one by
    ``--name`` and one as an argument, are refused."""
    from coldfront_launch.cli.common import BadValue
    obj = ctx.find_root().ensure_object(dict)
    given, given_by = obj.get("name"), obj.get("name_source")
    if given is not None and given != value and given_by != source:
        raise BadValue(f"two instance names, {given!r} ({given_by}) and {value!r} "
                       f"({source}): give one")
    obj["name"], obj["name_source"] = check(value), source


def option(func: F) -> F:
    """``--name`` after the verb too (``cf-launch start --name x``)."""
    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            use(ctx, value, "--name")
    made: F = click.option("--name", "name_option", expose_value=False, callback=remember,
                           shell_complete=complete,
                           help="Instance name (the same as NAME).")(func)
    return made


def argument(func: F) -> F:
    """An optional positional ``NAME`` (``cf-launch logs coldfront``)."""
    def remember(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            use(ctx, value, "NAME")
    made: F = click.argument("instance_name", required=False, expose_value=False,
                             callback=remember, shell_complete=complete, metavar="[NAME]")(func)
    return made


def arguments(func: F) -> F:
    """Any number of positional names (``cf-launch stop a b``), passed as ``names``."""
    made: F = click.argument("names", nargs=-1, shell_complete=complete,
                             metavar="[NAME]...")(func)
    return made


def each(func: F) -> F:
    """Run the command once per name in ``names`` (once with the usual name when there are
    none). Several names: each one's errors are reported and the others still run; with
    ``--json`` the results (and errors) are one JSON list; the exit code is the first
    failure's."""
    @wraps(func)
    def run(ctx: click.Context, names: tuple[str, ...], *args: Any, **kwargs: Any) -> Any:
        unique = list(dict.fromkeys(check(n) for n in names))
        if len(unique) <= 1:
            if unique:
                use(ctx, unique[0], "NAME")
            return func(ctx, *args, **kwargs)
        obj = ctx.find_root().ensure_object(dict)
        if obj.get("name_source") == "--name":
            from coldfront_launch.cli.common import BadValue
            raise BadValue("several names as arguments and one with --name: give them all "
                           "as arguments")
        out = output.current()
        out.collected = [] if out.json else None
        codes = []
        for name in unique:
            obj["name"], obj["name_source"] = name, "NAME"
            try:
                func(ctx, *args, **kwargs)
                codes.append(0)
            except SystemExit as err:
                codes.append(output.exit_code_of(err))
                if codes[-1] == 130:  # Ctrl-C: not the next one either
                    break
        output.flush_collected(codes)
        return None
    return run  # type: ignore[return-value]


COMMAND = "cf_launch.command"


class ExecCommand(click.Command):  # type: ignore[misc]  # click is not type-checked here
    """``VERB [NAME] [OPTIONS] -- COMMAND...``: the words after ``--`` are the command's
    own. Without ``--``: the first word that is no option is NAME and the rest the command
    (``exec``'s form before names were optional), or with ``name_first`` False all of
    them are the command (``manage ARGS...``)."""

    name_first = True
    #: the options that take a value (their value is not NAME)
    valued = ("--name", "--pwd")

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[COMMAND] = args[at + 1:]
            head = args[:at]
        else:
            first = 0
            while first < len(args) and args[first].startswith("-"):
                first += 2 if args[first] in self.valued else 1
            cut = first + 1 if self.name_first else first
            ctx.meta[COMMAND], head = args[cut:], args[:cut]
        left: list[str] = super().parse_args(ctx, head)
        return left


class ManageCommand(ExecCommand):
    name_first = False


def command_words(ctx: click.Context) -> list[str]:
    words: list[str] = ctx.meta.get(COMMAND) or []
    return words
