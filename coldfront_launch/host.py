"""The one narrow interface through which hooks change the host.

Two implementations share it: :class:`RealHost` (journals an undo action, then acts) and
:class:`RecordingHost` (only records), which ``cf-launch plan`` uses. Both produce the same
list of :class:`Change` records, so a plan cannot drift from a start.

Per-instance changes are undone by that instance's ``stop``. Shared changes (a CNI conflist,
a sysctl, the bridge) are claimed by every instance that needs them and put back as they
were by the last one to stop (see :mod:`coldfront_launch.claims`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import claims, firewall, netinfo
from .errors import HostChangeError
from .state import InstanceState

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
        d = self.detail
        text = {
            "dir": f"create directory {self.target}",
            "file": f"write {self.target} (mode {d.get('mode')})",
            "shared-file": f"write {self.target} (mode {d.get('mode')}, shared by instances)",
            "sysctl": f"sysctl {self.target} = {d.get('value')} (previous value restored)",
            "link": f"claim link {self.target} (deleted by the last instance if cf-launch "
                    f"created it)",
            "offloads": f"offloads on {self.target}: " + ", ".join(
                f"{k} {'on' if v else 'off'}" for k, v in d.get("features", {}).items()),
        }.get(self.kind, f"{self.kind} {self.target}")
        if self.kind == "firewall":
            text = f"firewall ruleset {self.target}:\n" + "".join(
                f"    {line}\n" for line in d["restore"].splitlines()).rstrip("\n")
        return text


class HostChanges(Protocol):
    """What a hook may do to the host. Every method is idempotent and undone on stop."""

    changes: list[Change]

    def make_dir(self, path: Path) -> None:
        """Create a directory and any missing parents (removed on stop if left empty)."""

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        """Create a file this instance owns; refuse to overwrite one cf-launch did not create."""

    def share_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        """Create a file several instances need; the last one to stop removes it."""

    def set_sysctl(self, key: str, value: str) -> None:
        """Set a kernel setting; the last holder to stop restores the first one's original."""

    def claim_link(self, ifname: str) -> None:
        """Hold a link others create for us (the CNI bridge); removed by the last holder
        if it did not exist before the first claim."""

    def apply_firewall(self, owner: str, ruleset: firewall.Ruleset) -> None:
        """Install this instance's own chains and their jumps atomically."""

    def set_offloads(self, ifname: str, features: dict[str, bool], shared: bool = False) -> None:
        """Set NIC offload features (``ethtool -K``); ``shared`` for a link many use."""


class RecordingHost:
    """Records changes and makes none: the engine behind ``cf-launch plan``."""

    def __init__(self) -> None:
        self.changes: list[Change] = []

    def make_dir(self, path: Path) -> None:
        self.changes.append(Change("dir", str(path)))

    def write_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        self.changes.append(Change("file", str(path), {"mode": f"{mode:04o}", "content": content}))

    def share_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        self.changes.append(Change("shared-file", str(path),
                                   {"mode": f"{mode:04o}", "content": content}))

    def set_sysctl(self, key: str, value: str) -> None:
        self.changes.append(Change("sysctl", key, {"value": value}))

    def claim_link(self, ifname: str) -> None:
        self.changes.append(Change("link", ifname))

    def apply_firewall(self, owner: str, ruleset: firewall.Ruleset) -> None:
        self.changes.append(Change("firewall", owner,
                                   {"restore": ruleset.restore_text(), **ruleset.to_json()}))

    def set_offloads(self, ifname: str, features: dict[str, bool], shared: bool = False) -> None:
        self.changes.append(Change("offloads", ifname,
                                   {"features": dict(features), "shared": shared}))


class RealHost(RecordingHost):
    """Makes each change for real, journaling its undo action first."""

    def __init__(self, state: InstanceState, state_root: Path) -> None:
        super().__init__()
        self.state = state
        self.state_root = state_root
        self.instance = state.directory.name
        entries = state.entries()
        self._owned = {e["path"] for e in entries if e["kind"] == "remove_file"}
        self.netns = netinfo.netns_id()
        if not any(e["kind"] == "netns" for e in entries):
            # Undo must happen in the namespace the changes were made in (see undo.py).
            state.record({"kind": "netns", "id": self.netns})

    def _claim(self, resource: str, original: Any, **kwargs: Any) -> dict[str, Any]:
        kind, _, name = resource.partition(":")
        if kind != "file":  # network resources exist once per network namespace
            resource = f"{kind}@{self.netns}:{name}"
        self.state.record({"kind": "release", "resource": resource})
        return claims.claim(self.state_root, self.instance, resource, lambda: original, **kwargs)

    def make_dir(self, path: Path) -> None:
        super().make_dir(path)
        self._ensure_dir(path)

    def _ensure_dir(self, path: Path) -> None:
        """Create missing folders, journaling each for removal (part of a file's change)."""
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
        self._ensure_dir(path.parent)
        if str(path) not in self._owned:
            self.state.record({"kind": "remove_file", "path": str(path)})
            self._owned.add(str(path))
        _atomic_write(path, content, mode)

    def share_file(self, path: Path, content: str, mode: int = 0o644) -> None:
        super().share_file(path, content, mode)
        resource = f"file:{path}"
        digest = hashlib.sha256(content.encode()).hexdigest()
        existing = claims.read(self.state_root).get(resource)
        if existing is None and path.exists():
            raise HostChangeError(f"{path} exists and cf-launch did not create it",
                                  "move it away or choose another name in the settings")

        def same_content(entry: dict[str, Any]) -> None:
            if entry.get("sha256") != digest:
                raise HostChangeError(
                    f"{path} is in use by {', '.join(entry['holders'])} with other settings",
                    "give this instance the same network settings, or another network name")

        self._ensure_dir(path.parent)
        self._claim(resource, "absent", check=same_content, extra={"sha256": digest})
        if not path.exists():
            _atomic_write(path, content, mode)

    def set_sysctl(self, key: str, value: str) -> None:
        super().set_sysctl(key, value)
        self._claim(f"sysctl:{key}", read_sysctl(key))
        if read_sysctl(key) != value:
            write_sysctl(key, value)

    def claim_link(self, ifname: str) -> None:
        super().claim_link(ifname)
        self._claim(f"link:{ifname}", "present" if netinfo.link_exists(ifname) else "absent")

    def apply_firewall(self, owner: str, ruleset: firewall.Ruleset) -> None:
        super().apply_firewall(owner, ruleset)
        family = ruleset.family
        v6 = "6" if family == "ipv6" else ""
        live = firewall.Live.read(family)
        for table in ruleset.tables():  # iptables-nft creates a table on first use
            self._claim(f"ip{v6}tables-table:{table}",
                        "present" if table in live.chains else "absent")
        if firewall.nft_available():  # ... and a built-in chain on its first rule
            base = firewall.base_chains_present(family)
            for jump in ruleset.jumps:
                exists = (jump.table, jump.builtin) in base
                self._claim(f"nft{v6}-chain:{jump.table}/{jump.builtin}",
                            "present" if exists else "absent")
        self.state.record({
            "kind": "remove_firewall",
            "chains": [[c.table, c.name] for c in ruleset.chains],
            "jumps": [[j.table, j.builtin, j.spec] for j in ruleset.jumps],
            **({"family": family} if v6 else {}),
        })
        firewall.apply(ruleset, live)

    def set_offloads(self, ifname: str, features: dict[str, bool], shared: bool = False) -> None:
        super().set_offloads(ifname, features, shared)
        before = netinfo.read_offloads(ifname)
        previous = {k: before[k] for k in features if k in before}
        if shared:
            self._claim(f"offloads:{ifname}", previous)
        else:
            self.state.record({"kind": "restore_offloads", "ifname": ifname,
                               "features": previous})
        netinfo.write_offloads(ifname, features)


def _atomic_write(path: Path, content: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.cf-launch-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


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


def restore_resource(resource: str, original: Any) -> None:
    """Put a shared resource back as the first claimant found it."""
    kind, _, name = resource.partition(":")
    kind = kind.split("@", 1)[0]
    if kind == "sysctl":
        write_sysctl(name, str(original))
    elif kind == "file" and original == "absent":
        Path(name).unlink(missing_ok=True)
    elif kind == "link" and original == "absent":
        netinfo.delete_link_if_unused(name)
    elif kind in ("iptables-table", "ip6tables-table") and original == "absent":
        firewall.drop_table_if_empty(name, _family(kind))
    elif kind in ("nft-chain", "nft6-chain") and original == "absent":
        table, chain = name.split("/", 1)
        firewall.drop_base_chain_if_empty(table, chain, _family(kind))
    elif kind == "offloads" and original and netinfo.link_exists(name):
        netinfo.write_offloads(name, original)


def _family(kind: str) -> str:
    """ip6tables-table and nft6-chain claims are IPv6's; the rest IPv4's."""
    return "ipv6" if kind in ("ip6tables-table", "nft6-chain") else "ipv4"
