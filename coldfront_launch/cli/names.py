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
    """The instances cf-launch started under the state root: ``--state-root``, else the
    settings' (``--config``, ./cf-launch.toml, /etc), else the default; names already on
    the command line are not offered again."""
    from coldfront_launch.lifecycle.status import known_names
    params = ctx.find_root().params
    root = params.get("state_root") or _settings_root(params.get("config"))
    taken = set(ctx.params.get("names") or ())
    return [CompletionItem(n) for n in known_names(Path(root))
            if n.startswith(incomplete) and n not in taken]


def _settings_root(config: Path | None) -> Path:
    from coldfront_launch.config.settings import DEFAULT_STATE_ROOT, load_settings
    from coldfront_launch.errors import LaunchError
    try:
        return load_settings(config).state_root
    except (LaunchError, OSError):  # no completion is worth an error message
        return DEFAULT_STATE_ROOT


def check(value: str) -> str:
    """A valid instance name, or cf-launch's one-line refusal (exit 2)."""
    from coldfront_launch.cli.common import BadValue
    from coldfront_launch.config.validate import INSTANCE_NAME
    if not INSTANCE_NAME.fullmatch(value):
        raise BadValue(f"{value!r} is not a valid instance name (letters, digits, '_', '.' "
                       "and '-', starting with a letter or digit)", param_hint="NAME")
    return value


def use(ctx: click.Context, value: str, source: str) -> None:
    """Make ``value`` the instance this command acts on; two different names (by
    ``--name`` before and after the verb, or as an argument) are refused."""
    from coldfront_launch.cli.common import BadValue
    obj = ctx.find_root().ensure_object(dict)
    given, given_by = obj.get("name"), obj.get("name_source")
    if given is not None and given != value and given_by != source:
        raise BadValue(f"two instance names, {given!r} ({given_by}) and {value!r} "
                       f"({source}): give one", param_hint=source)
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


#: Exit codes that end a run of several names at once (interrupted, terminated).
STOPPING = (130, 143)


def each(func: F, alone: dict[str, str] | None = None) -> F:
    """Run the command once per name in ``names`` (once with the usual name when there are
    none). Several names: each one's errors are reported and the others still run; with
    ``--json`` the results (and errors) are one JSON list; the exit code is the first
    failure's (Ctrl-C or SIGTERM: theirs, and the rest is not run). ``alone``: the
    flags that take no names, by parameter (``{"every": "--all"}``)."""
    @wraps(func)
    def run(ctx: click.Context, names: tuple[str, ...], *args: Any, **kwargs: Any) -> Any:
        unique = list(dict.fromkeys(check(n) for n in names))
        given = [flag for param, flag in (alone or {}).items() if kwargs.get(param)]
        if unique and given:
            from coldfront_launch.cli.common import BadValue
            raise BadValue(f"{given[0]} takes no instance names (it lists every instance)")
        if len(unique) <= 1:
            if unique:
                use(ctx, unique[0], "NAME")
            return func(ctx, *args, **kwargs)
        obj = ctx.find_root().ensure_object(dict)
        if str(obj.get("name_source") or "").startswith("--name"):
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
                if codes[-1] in STOPPING:  # Ctrl-C, SIGTERM: not the next one either
                    break
        output.flush_collected(codes, last_wins=bool(codes) and codes[-1] in STOPPING)
        return None
    return run  # type: ignore[return-value]


COMMAND = "cf_launch.command"


class ExecCommand(click.Command):  # type: ignore[misc]  # click is not type-checked here
    """``VERB [NAME] [OPTIONS] -- COMMAND...``: the words after ``--`` are the command's
    own. Without ``--``: the first word that is none of our options is NAME (unless
    ``--name`` gave one), our options may follow it, and the rest is the command
    (``exec``'s form before names were optional); with ``name_first`` False all of them
    are the command (``manage ARGS...``)."""

    name_first = True
    #: the options that take a value (their value is not NAME)
    valued = ("--name", "--pwd")

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces: list[str] = [*super().collect_usage_pieces(ctx), "-- COMMAND..."]
        return pieces

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta[COMMAND] = args[at + 1:]
            head = args[:at]
        else:
            first = self._options_from(args, 0)
            named = "--name" in args[:first] or any(a.startswith("--name=")
                                                    for a in args[:first]) or \
                str((ctx.find_root().obj or {}).get("name_source") or "").startswith("--name")
            cut = first + 1 if self.name_first and not named else first
            cut = self._options_from(args, cut) if cut > first else cut  # NAME --pwd D CMD
            ctx.meta[COMMAND], head = args[cut:], args[:cut]
        left: list[str] = super().parse_args(ctx, head)
        return left

    def _options_from(self, args: list[str], at: int) -> int:
        """The index of the first word from ``at`` on that is not one of our options."""
        while at < len(args) and (args[at] in (*self.valued, "-h", "--help") or
                                  args[at].startswith(tuple(f"{v}=" for v in self.valued))):
            at += 2 if args[at] in self.valued else 1
        return at


class ManageCommand(ExecCommand):
    name_first = False


def command_words(ctx: click.Context) -> list[str]:
    words: list[str] = ctx.meta.get(COMMAND) or []
    return words
