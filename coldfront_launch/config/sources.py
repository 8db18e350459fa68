"""Where each setting comes from: ``cf-launch config show``.

The settings are read as :func:`~coldfront_launch.config.settings.load_settings` reads
them (the same files, the same merge, the same validation, the same pin); each leaf of the
result is then attributed to the last file that set it, to the flag that did, or to the
default. Values of secrets are masked (:func:`is_secret`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coldfront_launch.config.settings import (
    LOCAL_CONFIG,
    Settings,
    _merge,
    _to_raw,
    config_files,
    read_toml,
    settings_from_mapping,
    with_pin,
)
from coldfront_launch.state import pin as imagepin

DEFAULT = "default"
MASK = "********"
#: The global flags that override a setting, by the setting they override.
FLAGS = {"name": "--name", "state_root": "--state-root"}
#: Words that make a key a secret's (matched against the key's ``_``/``-`` separated words).
SECRET_WORDS = frozenset({"secret", "secrets", "password", "passwd", "passphrase", "pwd", "pw",
                          "token", "tokens", "key", "keys", "apikey", "credential",
                          "credentials"})
#: Settings that hold the value of a secret although their name does not say so.
SECRET_KEYS = frozenset({("coldfront", "database_url")})  # may hold the database password
#: Settings named like a secret that hold a file's path (the secret stays in the file).
PATH_KEYS = frozenset({("coldfront", "tls", "key")})

Key = tuple[str, ...]


@dataclass(frozen=True)
class Leaf:
    """One setting: its dotted key, value (masked if a secret) and source."""

    key: str
    value: Any
    source: str


@dataclass(frozen=True)
class Shown:
    """The settings ``load_settings`` gives, with where each leaf came from."""

    files: list[str]
    settings: Settings
    leaves: list[Leaf]

    def to_json(self) -> dict[str, Any]:
        pinned = self.settings.pinned_image
        return {"files": self.files,
                "settings": {leaf.key: {"value": leaf.value, "source": leaf.source}
                             for leaf in self.leaves},
                "pinned_image": None if pinned is None else
                {"path": str(pinned),
                 "source": str(self.settings.state_dir / imagepin.PIN_FILE)}}


def show(explicit: Path | None = None, name: str | None = None,
         state_root: Path | None = None, name_flag: str = FLAGS["name"]) -> Shown:
    """Read and validate the settings as ``load_settings(explicit, name=name,
    state_root=state_root)`` does; attribute every leaf. ``name_flag``: what gave
    ``name`` on the command line (``--name``, or e.g. ``NAME`` for an argument)."""
    layers = read_layers(explicit)
    data: dict[str, Any] = {}
    for _label, layer in layers:
        data = _merge(data, layer)
    flags = {"name": name, "state_root": state_root}
    settings = with_pin(settings_from_mapping(data).with_overrides(**flags))
    labels = {**FLAGS, "name": name_flag}
    found = origins(layers)
    found.update({(key,): labels[key] for key, value in flags.items() if value is not None})
    leaves = [Leaf(dotted(path), masked(path, value), source_of(path, found))
              for path, value in flatten(_to_raw(settings))]
    return Shown([label for label, _ in layers], settings, leaves)


def read_layers(explicit: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """Each settings file, lowest precedence first, as (its label, its data); the label is
    the path shown as the source of what the file sets."""
    paths = config_files(explicit)
    layers = []
    for i, path in enumerate(paths):
        given = explicit is not None and i == len(paths) - 1
        label = str(path) if given or path != LOCAL_CONFIG else f"./{LOCAL_CONFIG}"
        layers.append((label, read_toml(path, "--config" if path == explicit else
                                        "settings file")))
    return layers


def origins(layers: list[tuple[str, dict[str, Any]]]) -> dict[Key, str]:
    """Every leaf key the files set, with the label of the last file that set it."""
    found: dict[Key, str] = {}
    for label, layer in layers:
        for path, _value in flatten(layer):
            found[path] = label
    return found


def source_of(path: Key, found: dict[Key, str]) -> str:
    """Where the leaf at ``path`` came from: its own entry, else the nearest table above
    it that a file gave whole (a table set to a non-table value), else the default."""
    for end in range(len(path), 0, -1):
        if path[:end] in found:
            return found[path[:end]]
    return DEFAULT


def flatten(data: dict[str, Any], prefix: Key = ()) -> list[tuple[Key, Any]]:
    """The leaves of nested tables, in order: a value that is not a table, or an empty
    table (lists are leaves)."""
    leaves: list[tuple[Key, Any]] = []
    for key, value in data.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            leaves += flatten(value, path)
        else:
            leaves.append((path, value))
    return leaves


def dotted(path: Key) -> str:
    """A TOML dotted key: bare keys as they are, any other key quoted."""
    return ".".join(part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else json.dumps(part)
                    for part in path)


def is_secret(path: Key) -> bool:
    """Whether the setting at ``path`` holds a secret's value: a key whose words name a
    secret, password, token or key (e.g. ``extra_env.LDAP_BIND_PASSWORD``,
    ``hook.x.api_key``) and that is not a path (``*_file``, ``*_files``,
    ``extra_env_files.*``, ``coldfront.tls.key``); and ``coldfront.database_url``."""
    if path in SECRET_KEYS:
        return True
    if path in PATH_KEYS or any(part.lower().endswith(("_file", "_files")) for part in path):
        return False
    return secret_name(path[-1])


def secret_name(key: str) -> bool:
    """A key naming a secret: one of its words (``_``, ``-``, ``.``, camelCase) is in
    :data:`SECRET_WORDS`, or it holds one of ColdFront's env secret words anywhere
    (``PASSWORD``, ``PRIVATE``…, as ``plan`` masks them)."""
    from coldfront_launch.config.coldfront import ENV_SECRET_WORDS as ENV_WORDS
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    words = re.split(r"[_\-.\s]+", spaced.lower())
    return any(word in SECRET_WORDS for word in words) or \
        any(word in key.upper() for word in ENV_WORDS)


def masked(path: Key, value: Any) -> Any:
    """``value``, or :data:`MASK` for a secret that is set (an unset one stays visible);
    in a list, each table's secret keys masked the same way."""
    if is_secret(path) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, list):
        return [masked((*path, str(i)), item) if not isinstance(item, dict) else
                {k: masked((*path, k), v) for k, v in item.items()} for i, item in
                enumerate(value)]
    return value
