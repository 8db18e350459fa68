"""Which image an instance runs after ``cf-launch upgrade``: its pin, ``<state>/image.json``.

``upgrade`` builds (or is given) a new image, proves it, and pins it here, with the image it
replaced kept as ``previous``. ``start`` boots the pinned image for as long as the settings
still name the image they named at the upgrade (``configured``): change ``image`` (or pass
``--image``) and the settings win again. Nothing here runs Apptainer.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from coldfront_launch import atomic
from coldfront_launch.errors import ConfigError

PIN_FILE = "image.json"
FORMAT = 1
#: A version as pip takes it (PEP 440's characters; never quotes, spaces or shell syntax).
VERSION = re.compile(r"[0-9][0-9A-Za-z.+!-]{0,40}")


@dataclass(frozen=True)
class PinnedImage:
    """One image and the ColdFront version in it (None: not known)."""

    image: str
    coldfront_version: str | None = None


@dataclass(frozen=True)
class Pin:
    """What the last successful upgrade left: the image, the one before it, and when."""

    current: PinnedImage
    configured: str
    previous: PinnedImage | None = None
    upgraded: str = ""
    backup: str | None = None
    #: False while ``upgrade`` boots ``current`` for the first time: a pin left so (the
    #: upgrade was killed) is proven by the next ``start`` that gets an answer.
    proven: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "current": asdict(self.current), "configured": self.configured,
                "previous": asdict(self.previous) if self.previous else None,
                "upgraded": self.upgraded, "backup": self.backup, "proven": self.proven}


def read(state_dir: Path) -> Pin | None:
    """The instance's pin, or None when it has never been upgraded."""
    path = state_dir / PIN_FILE
    try:
        data = json.loads(path.read_text())
        previous = data.get("previous")
        return Pin(PinnedImage(**data["current"]), str(data["configured"]),
                   PinnedImage(**previous) if previous else None,
                   str(data.get("upgraded", "")), data.get("backup"),
                   bool(data.get("proven", True)))
    except (FileNotFoundError, PermissionError):  # never upgraded; or not root (plan, status)
        return None
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise ConfigError(str(path), f"cannot read the upgrade record: {err}",
                          "fix or remove it (then `start` boots the image the settings name)"
                          ) from None


def write(state_dir: Path, pin: Pin) -> None:
    """Replace the pin atomically."""
    atomic.write_json(state_dir / PIN_FILE, pin.to_json(), indent=2)


def remove(state_dir: Path) -> None:
    (state_dir / PIN_FILE).unlink(missing_ok=True)


def prove(state_dir: Path, image: Path) -> bool:
    """``image`` answered: if it is the unproven image of an interrupted upgrade, the
    upgrade is complete now. Returns whether the pin changed."""
    pin = read(state_dir)
    if pin is None or pin.proven or Path(pin.current.image) != image:
        return False
    write(state_dir, replace(pin, proven=True))
    return True


def pinned_image(state_dir: Path, configured: Path) -> Path | None:
    """The image ``start`` boots instead of ``configured``, or None when there is no pin or
    the settings have named another image since the upgrade."""
    pin = read(state_dir)
    if pin is None or pin.configured != str(configured):
        return None
    return Path(pin.current.image)


def release(version: str | None) -> tuple[int, ...] | None:
    """The numeric release of a version (``1.1.10`` → (1, 1, 10)); None if it has none."""
    match = re.match(r"\d+(?:\.\d+)*", version or "")
    return tuple(int(part) for part in match.group(0).split(".")) if match else None


def is_older(version: str | None, than: str | None) -> bool:
    """True when both versions are known and ``version``'s release is lower."""
    mine, theirs = release(version), release(than)
    return mine is not None and theirs is not None and mine < theirs


def held_back(state_root: Path, configured: Path) -> dict[str, str]:
    """Instances whose last upgrade pinned another image than ``configured`` names now
    (instance name -> the pinned image): ``build`` tells the admin ``upgrade`` moves them."""
    found: dict[str, str] = {}
    for state in sorted(state_root.glob(f"*/{PIN_FILE}")) if state_root.is_dir() else []:
        try:
            pin = read(state.parent)
        except ConfigError:
            continue
        if pin is not None and pin.configured == str(configured) \
                and Path(pin.current.image) != configured.resolve():
            found[state.parent.name] = pin.current.image
    return found
