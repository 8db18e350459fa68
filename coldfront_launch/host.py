"""The one narrow interface through which hooks change the host.

Two implementations share it: :class:`RealHost` (journals an undo action, then acts) and
:class:`RecordingHost` (only records), which ``cf-launch plan`` uses. Both produce the same
list of :class:`Change` records, so a plan cannot drift from a start.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import firewall
from .errors import HostChangeError
from .state import InstanceState, shared_lock

SYSCTL_ROOT = Path("/proc/sys")


@dataclass(frozen=True)
class Change:
    """One host change, as ``plan`` prints it and ``start`` makes it."""

    kind: str
    target: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, **self.detail}

    def describe(self) -> str:
        if self.kind == "file":
            return f"write {self.target} (mode {self.detail['mode']})"
        if self.kind == "dir":
            return f"create directory {self.target}"
        if self.kind == "sysctl":
            return f"sysctl {self.target} = {self.detail['value']}"
        if self.kind == "offloads":
            feats = ", ".join(f"{k} {'on' if val else 'off'}"
                              for k, val in self.detail["features"].items())
            return f"offloads on {self.target}: {feats}"
        if self.kind == "firewall":
            return f"firewall ruleset {self.target}:\n" + _indent(self.detail["restore"])
        return f"{self.kind} {self.target}"


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())


class HostChanges(Protocol):
    """What a hook may do to the host. Every method is idempotent and undone on stop."""

    changes: list[Change]

    def make_dir(self, path: Path) -> None:
        """Create a directory and any missing parents."""

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        """Create a file cf-launch owns; refuse to overwrite one it did not create."""

    def set_sysctl(self, key: str, value: str) -> None:
        """Set a kernel setting; the first holder's previous value returns on the last stop."""

    def apply_firewall(self, owner: str, ruleset: firewall.Ruleset) -> None:
        """Install owned chains and their jumps atomically."""

    def set_offloads(self, ifname: str, features: dict[str, bool]) -> None:
        """Turn NIC offload features on or off (``ethtool -K``)."""


class RecordingHost:
    """Records changes and makes none: the engine behind ``cf-launch plan``."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def make_dir(self, path: Path) -> None:
        self.changes.append(Change("dir", str(path)))

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        self.changes.append(Change("file", str(path), {"mode": oct(mode), "content": content}))

    def set_sysctl(self, key: str, value: str) -> None:
        self.changes.append(Change("sysctl", key, {"value": value}))

    def apply_firewall(self, owner: str, ruleset: firewall.Ruleset) -> None:
        self.changes.append(Change("firewall", owner,
                                   {"restore": ruleset.restore_text(), **ruleset.to_json()}))

    def set_offloads(self, ifname: str, features: dict[str, bool]) -> None:
        self.changes.append(Change("offloads", ifname, {"features": dict(features)}))


class RealHost(RecordingHost):
    """Makes each change for real, journaling its undo action first."""

    def __init__(self, state: InstanceState, state_root: Path) -> None:
        super().__init__()
        self.state = state
        self.state_root = state_root
        self._owned = {e["path"] for e in state.entries() if e["kind"] in ("remove_file",)}

    def make_dir(self, path: Path) -> None:
        super().make_dir(path)
        missing = []
        probe = path
        while not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for directory in reversed(missing):
            self.state.record({"kind": "remove_dir", "path": str(directory)})
            directory.mkdir(exist_ok=True)

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        super().write_file(path, content, mode)
        if path.exists() and str(path) not in self._owned:
            raise HostChangeError(f"{path} exists and cf-launch did not create it",
                                  "move it away or choose another path; cf-launch never "
                                  "overwrites files it does not own")
        self.make_dir(path.parent)
        if str(path) not in self._owned:
            self.state.record({"kind": "remove_file", "path": str(path)})
            self._owned.add(str(path))
        tmp = path.with_name(f".{path.name}.cf-launch-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def set_sysctl(self, key: str, value: str) -> None:
        super().set_sysctl(key, value)
        instance = self.state.directory.name
        with shared_lock(self.state_root):
            holders = _read_holders(self.state_root)
            entry = holders.setdefault(key, {"original": read_sysctl(key), "holders": []})
            if instance not in entry["holders"]:
                entry["holders"].append(instance)
            self.state.record({"kind": "release_sysctl", "key": key})
            _write_holders(self.state_root, holders)
            if read_sysctl(key) != value:
                write_sysctl(key, value)

    def apply_firewall(self, owner: str, ruleset: firewall.Ruleset) -> None:
        super().apply_firewall(owner, ruleset)
        self.state.record({
            "kind": "remove_firewall",
            "chains": [[c.table, c.name] for c in ruleset.chains],
            "jumps": [[j.table, j.builtin, j.spec] for j in ruleset.jumps],
        })
        firewall.apply(ruleset)

    def set_offloads(self, ifname: str, features: dict[str, bool]) -> None:
        super().set_offloads(ifname, features)
        before = read_offloads(ifname)
        previous = {k: before[k] for k in features if k in before}
        self.state.record({"kind": "restore_offloads", "ifname": ifname, "features": previous})
        write_offloads(ifname, features)


# --- sysctl -------------------------------------------------------------------------------

def _sysctl_path(key: str) -> Path:
    return SYSCTL_ROOT / key.replace(".", "/")


def read_sysctl(key: str) -> str:
    try:
        return _sysctl_path(key).read_text().strip()
    except OSError as err:
        raise HostChangeError(f"cannot read sysctl {key}: {err.strerror}") from None


def write_sysctl(key: str, value: str) -> None:
    try:
        _sysctl_path(key).write_text(value + "\n")
    except OSError as err:
        raise HostChangeError(f"cannot set sysctl {key}={value}: {err.strerror}",
                              "cf-launch must run as root") from None


def _holders_file(state_root: Path) -> Path:
    return state_root / "sysctl-holders.json"


def _read_holders(state_root: Path) -> dict[str, Any]:
    path = _holders_file(state_root)
    if not path.exists():
        return {}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _write_holders(state_root: Path, holders: dict[str, Any]) -> None:
    path = _holders_file(state_root)
    if not holders:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(holders, indent=2, sort_keys=True))
    os.replace(tmp, path)


def release_sysctl(state_root: Path, instance: str, key: str) -> None:
    """Drop this instance's claim; the last holder puts the original value back."""
    with shared_lock(state_root):
        holders = _read_holders(state_root)
        entry = holders.get(key)
        if entry is None:
            return
        if instance in entry["holders"]:
            entry["holders"].remove(instance)
        if not entry["holders"]:
            write_sysctl(key, entry["original"])
            del holders[key]
        _write_holders(state_root, holders)


# --- offloads -----------------------------------------------------------------------------

def _ethtool(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ethtool", *argv], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise HostChangeError("ethtool is not installed", "install ethtool") from None


def read_offloads(ifname: str) -> dict[str, bool]:
    """The interface's offload features (``ethtool -k``), keyed by ethtool's long names."""
    result = _ethtool(["-k", ifname])
    if result.returncode != 0:
        raise HostChangeError(f"cannot read offloads of {ifname}: {result.stderr.strip()}")
    features: dict[str, bool] = {}
    for line in result.stdout.splitlines()[1:]:
        name, _, rest = line.strip().partition(":")
        if rest:
            features[name] = rest.split()[0] == "on"
    return features


SHORT_NAMES = {
    "tx-checksumming": "tx", "rx-checksumming": "rx", "scatter-gather": "sg",
    "tcp-segmentation-offload": "tso", "generic-segmentation-offload": "gso",
    "generic-receive-offload": "gro",
}


def write_offloads(ifname: str, features: dict[str, bool]) -> None:
    argv = ["-K", ifname]
    for name, on in features.items():
        argv += [SHORT_NAMES.get(name, name), "on" if on else "off"]
    result = _ethtool(argv)
    if result.returncode != 0:
        raise HostChangeError(f"cannot change offloads of {ifname}: {result.stderr.strip()}")
