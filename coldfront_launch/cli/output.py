"""How ``cf-launch`` prints: results as JSON on stdout when asked (errors too, as one
object of a fixed shape), colour by ``--color`` and ``NO_COLOR``, progress hushed by
``-q``, and one JSON list when a command acts on several instances."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import click

from coldfront_launch.exitcodes import ExitCode

KEY = "cf_launch.output"


@dataclass
class Output:
    """The output settings of this invocation, kept on the root click context."""

    json: bool = False
    quiet: bool = False
    #: results of several instances, printed as one JSON list at the end (None: print now)
    collected: list[Any] | None = None


def current() -> Output:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return Output()
    meta = ctx.find_root().meta
    if KEY not in meta:
        meta[KEY] = Output()
    found: Output = meta[KEY]
    return found


def wants_json(args: list[str]) -> bool:
    """Whether the subcommand's words ask for JSON: ``--json`` or ``--format json``
    (before a ``--``, after which the words are a command's own)."""
    words = args[:args.index("--")] if "--" in args else args
    pairs = zip(words, [*words[1:], ""])
    return "--json" in words or "--format=json" in words or \
        any(a == "--format" and b == "json" for a, b in pairs)


def color_choice(choice: str) -> bool | None:
    """click's colour setting: ``always`` True, ``never`` False, ``auto`` None (colour on
    a terminal) unless ``NO_COLOR`` is set to anything (https://no-color.org)."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR", ""):
        return False
    return None


#: ``--color`` as the group read it (None: not read yet, or auto): for messages shown
#: after click has left the command's context.
CHOSEN: list[bool | None] = []


def color() -> bool | None:
    """The colour setting in force: ``--color`` once read, else ``NO_COLOR``'s."""
    return CHOSEN[-1] if CHOSEN else color_choice("auto")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def result(data: Any) -> None:
    """A command's JSON result: now, or kept for the list of several instances."""
    out = current()
    if out.collected is not None:
        out.collected.append(data)
    else:
        echo_json(data)


def error(message: str, hint: str, code: int, details: str = "") -> None:
    """An error: one red line and a hint on stderr; with ``--json`` also this object on
    stdout, so that a script reading stdout always gets JSON."""
    click.secho(f"cf-launch: error: {message}", fg="red", err=True, color=color())
    if details:
        click.echo(details, err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    if current().json:
        ctx = click.get_current_context(silent=True)
        name = (ctx.find_root().obj or {}).get("name") if ctx is not None else None
        result({"error": message, "hint": hint or None, "details": details or None,
                "exit_code": int(code), "code_name": code_name(code), "name": name})


def code_name(code: int) -> str:
    try:
        return ExitCode(code).name.lower()
    except ValueError:
        return "unknown"


def progress(message: str) -> None:
    """A progress line on stderr (``-q`` keeps all but warnings to itself)."""
    if current().quiet and not message.startswith("warning"):
        return
    click.echo(f"… {message}", err=True)


def exit_code_of(err: SystemExit) -> int:
    code = err.code
    if code is None:
        return 0
    return code if isinstance(code, int) else ExitCode.FAILURE


def flush_collected(codes: list[int], last_wins: bool = False) -> None:
    """Print the list of several instances' results; exit with the first failure's code
    (``last_wins``: the last one's, an interruption's)."""
    out = current()
    collected, out.collected = out.collected, None
    if collected is not None:
        echo_json(collected)
    failed = codes[-1] if last_wins else next((c for c in codes if c), 0)
    if failed:
        sys.exit(failed)
