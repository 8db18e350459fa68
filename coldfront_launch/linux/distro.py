"""Which Linux this is (``/etc/os-release``), and the install command for what is missing.

Pure functions: nothing here runs a process or touches the network. Paths are module
constants and function arguments, so tests point them at sample files. The recipes behind
each hint, and which of them CI has run, are in ``docs/install.md``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from coldfront_launch.types import Problem

OS_RELEASE_PATHS = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
APPTAINER_VERSION = "1.4.5"
INSTALL_DOC = "docs/install.md"

# The pieces cf-launch or its built-in hooks need, by the name install_hint() takes.
PIECES = ("apptainer", "cni", "iptables", "nft", "ethtool")


@dataclass(frozen=True)
class Distro:
    """The fields of os-release that decide the install commands."""

    id: str = ""
    id_like: tuple[str, ...] = ()
    version_id: str = ""
    pretty_name: str = ""

    @property
    def major(self) -> str:
        return self.version_id.split(".")[0]

    @property
    def family(self) -> str:
        """``al2023``, ``rhel``, ``fedora``, ``debian``, ``ubuntu`` or ``unknown``."""
        if self.id == "amzn":
            return "al2023" if self.major == "2023" else "unknown"
        if self.id in ("rhel", "rocky", "almalinux", "centos", "ol"):
            return "rhel"
        for name in (self.id, *self.id_like):
            if name in ("rhel", "centos"):
                return "rhel"
            if name in ("fedora", "debian", "ubuntu"):
                return name
        return "unknown"

    @property
    def label(self) -> str:
        return self.pretty_name or self.id or "this distribution"


_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$")


def parse_os_release(text: str) -> dict[str, str]:
    """os-release's ``KEY=value`` lines; quotes removed, backslash escapes honoured."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        key, raw = match.groups()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        elif len(raw) >= 2 and raw[0] == raw[-1] == "'":
            raw = raw[1:-1]
        values[key] = raw
    return values


def read_distro(os_release_path: Path | None = None) -> Distro:
    """The running distribution, from ``os_release_path`` or the standard locations."""
    candidates = (os_release_path,) if os_release_path else OS_RELEASE_PATHS
    for path in candidates:
        try:
            fields = parse_os_release(path.read_text(errors="replace"))
        except OSError:
            continue
        return Distro(id=fields.get("ID", "").lower(),
                      id_like=tuple(fields.get("ID_LIKE", "").lower().split()),
                      version_id=fields.get("VERSION_ID", ""),
                      pretty_name=fields.get("PRETTY_NAME", ""))
    return Distro()


def _apptainer_hint(d: Distro) -> str:
    v = APPTAINER_VERSION
    if d.family == "al2023":
        return ("Amazon Linux 2023 has no EPEL, and the GitHub release RPM needs "
                "fuse-overlayfs and squashfuse, which it does not package: build Apptainer "
                f"{v} from source (Go >= 1.23.6), or build those two and then "
                f"`dnf install -y https://github.com/apptainer/apptainer/releases/download/v{v}/"
                f"apptainer-{v}-1.x86_64.rpm`; step by step: {INSTALL_DOC}")
    if d.family == "rhel":
        epel = ("dnf install -y epel-release" if d.id != "rhel" else
                "dnf install -y https://dl.fedoraproject.org/pub/epel/"
                f"epel-release-latest-{d.major or '9'}.noarch.rpm")
        return f"{epel} && dnf install -y apptainer"
    if d.family == "fedora":
        return "dnf install -y apptainer"
    if d.family == "ubuntu":
        return ("apt-get install -y software-properties-common && "
                "add-apt-repository -y ppa:apptainer/ppa && apt-get update && "
                "apt-get install -y apptainer")
    if d.family == "debian" and d.major in ("11", "12"):
        deb = f"apptainer_{v}_amd64.deb"
        return (f"wget https://github.com/apptainer/apptainer/releases/download/v{v}/{deb} && "
                f"apt-get install -y ./{deb}")
    if d.family == "debian":
        return (f"add sid to apt's sources with a low pin ({INSTALL_DOC}), then "
                "apt-get update && apt-get install -y apptainer/unstable")
    return (f"install Apptainer {v}: https://apptainer.org/docs/admin/main/installation.html "
            f"({INSTALL_DOC})")


def _package_hint(d: Distro, rpm: str, deb: str) -> str:
    if d.family in ("al2023", "rhel", "fedora"):
        return f"dnf install -y {rpm}"
    if d.family in ("debian", "ubuntu"):
        return f"apt-get install -y {deb}"
    return f"install {deb} with your package manager"


def install_hint(piece: str, distro: Distro | None = None) -> str:
    """The command that installs ``piece`` (one of :data:`PIECES`) on ``distro``."""
    d = distro if distro is not None else read_distro()
    if piece == "apptainer":
        return _apptainer_hint(d)
    if piece == "cni":
        if d.family in ("debian", "ubuntu"):
            return ("apt-get install -y containernetworking-plugins, and set "
                    "`cni plugin path = /usr/lib/cni` in apptainer.conf if Apptainer looks "
                    "elsewhere")
        return ("reinstall Apptainer: its RPM and its source build ship the CNI plugins in "
                "<libexec>/apptainer/cni (`cni plugin path` in apptainer.conf)")
    if piece == "iptables":
        rpm = "iptables" if d.family == "rhel" and d.major == "8" else "iptables-nft"
        return _package_hint(d, rpm, "iptables")
    if piece == "nft":
        return _package_hint(d, "nftables", "nftables")
    if piece == "ethtool":
        return _package_hint(d, "ethtool", "ethtool")
    raise ValueError(f"unknown piece {piece!r}; known: {', '.join(PIECES)}")


def install_problems(os_release_path: Path | None = None,
                     path: str | None = None) -> list[Problem]:
    """Apptainer and spython's ``singularity`` link, each missing one with its command.

    ``path`` is the search path (default: ``$PATH``)."""
    search = path if path is not None else os.environ.get("PATH", os.defpath)
    apptainer = shutil.which("apptainer", path=search)
    singularity = shutil.which("singularity", path=search)
    if apptainer is None and singularity is None:
        d = read_distro(os_release_path)
        return [Problem("apptainer", f"Apptainer is not installed on {d.label} (neither "
                        "apptainer nor singularity is on PATH)", install_hint("apptainer", d))]
    if apptainer is not None and singularity is None:
        link = Path(apptainer).parent / "singularity"
        return [Problem("singularity link",
                        f"Apptainer is at {apptainer}, but the `singularity` link that spython "
                        "runs is missing", f"ln -s {apptainer} {link}")]
    return []
