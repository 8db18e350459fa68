"""Embedding in a site's own Apptainer workflow: what ``prepare`` prints, in three forms.

``prepare`` runs the first half of the launch sequence and hands the site the options to
add to its own ``apptainer instance start``; ``attach`` runs the second half once the
instance runs; ``detach`` undoes both. This module holds the printed forms and their
checks; the verbs themselves are :class:`~coldfront_launch.lifecycle.launcher.Launcher` methods.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coldfront_launch import atomic
from coldfront_launch.errors import ConfigError

FORMATS = ("shell", "json", "env")
ENV_NAME = "CF_LAUNCH_OPTIONS"
# What systemd's EnvironmentFile= parsing, or its splitting of an unquoted $VAR, would
# change: white space, quotes, backslashes.
UNSPLITTABLE = re.compile(r"[\s'\"\\]")


@dataclass
class Embedding:
    """What ``prepare`` produced."""

    name: str
    image: str
    options: list[str]
    command: list[str]
    changes: list[Any] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "image": self.image, "options": self.options,
                "command": self.command, "env": self.env}


def check_env_words(options: list[str]) -> None:
    """Refuse options that systemd would split or unquote in an env file."""
    for word in options:
        if UNSPLITTABLE.search(word):
            raise ConfigError("--format env", f"{word!r} holds white space, a quote or a "
                              "backslash, which systemd would split or change",
                              "use paths without them (a symbolic link works), or "
                              "--format shell/json")


def render(embedding: Embedding, form: str) -> str:
    """The text ``prepare`` prints: one shell line, JSON, or an env file body."""
    if form == "shell":
        return shlex.join(embedding.options) + "\n"
    if form == "env":
        check_env_words(embedding.options)
        return (f"# Written by cf-launch prepare for instance {embedding.name}: add\n"
                f"# ${ENV_NAME} (unquoted) to your unit's apptainer instance start line.\n"
                f"{ENV_NAME}={' '.join(embedding.options)}\n")
    import json
    return json.dumps(embedding.to_json(), indent=2) + "\n"


def write_output(path: Path, text: str) -> None:
    """Write atomically (a unit may read the file at any moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)


def dropin(unit: str, cf_launch: list[str], name: str, hooks: tuple[str, ...],
           env_file: Path, start_timeout: float) -> str:
    """A systemd drop-in that networks an existing unit's instance with cf-launch."""
    run = shlex.join(cf_launch)
    plugins = "".join(f" --hook {hook}" for hook in hooks)
    return (
        f"# /etc/systemd/system/{unit}.d/cf-launch.conf, written by `cf-launch service "
        "dropin`.\n"
        f"# {unit}'s own ExecStart adds $CF_LAUNCH_OPTIONS (unquoted) to its\n"
        "# `apptainer instance start --boot ...` line; systemd splits it into words.\n"
        "[Service]\n"
        "# '-': systemd reads this file before ExecStartPre has written it.\n"
        f"EnvironmentFile=-{env_file}\n"
        f"ExecStartPre={run} prepare --name {name}{plugins} --format env --output {env_file}\n"
        f"ExecStartPost={run} attach --name {name}\n"
        f"ExecStopPost={run} detach --name {name}\n"
        "# systemd inside then knows it runs in a container, so `cf-launch stop` can power\n"
        "# it off cleanly (without it, a poweroff inside cannot end).\n"
        "Environment=container=apptainer\n"
        "# attach waits until ColdFront answers (ready_timeout), within the start timeout.\n"
        f"TimeoutStartSec={int(start_timeout) + 60}\n"
    )
