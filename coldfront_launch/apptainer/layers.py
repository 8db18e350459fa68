"""Layered, content-addressed image builds.

Each layer is a definition file; a ``Bootstrap: localimage`` layer names its parent as
``From: {{ parent }}``, filled in with ``--build-arg``. A layer's key hashes its definition,
every file its ``%files`` section copies in, and its parent's key, so a layer is rebuilt
only when one of those changed. Images land under ``<cache>/layers/<name>-<key>.sif``
(written to a temporary name, then renamed), and ``<cache>/images/<top>.sif`` points at the
newest top layer.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from coldfront_launch import apptainer
from coldfront_launch.config.settings import BuildSettings
from coldfront_launch.errors import BuildError, ConfigError
from coldfront_launch.locks import file_lock

FORMAT = "cf-launch-build-1"
#: The name of a layer's image in the cache: ``<name>-<key>.sif``.
LAYER_FILE = re.compile(r"^(?P<layer>.+)-(?P<key>[0-9a-f]{16})\.sif$")
CA_MOUNT = "/mnt"
CA_NAME = "cf-launch-ca.crt"


@dataclass(frozen=True)
class Layer:
    """One resolved layer: its definition, key and cached image path."""

    name: str
    definition: Path
    key: str
    image: Path
    parent: Layer | None

    @property
    def cached(self) -> bool:
        return self.image.is_file()


@dataclass(frozen=True)
class BuildEvent:
    """Progress: ``kind`` is 'cached', 'start', 'line' (``text``: one line of output) or
    'done' (``seconds``: how long the layer took)."""

    kind: str
    layer: Layer
    index: int
    total: int
    text: str = ""
    seconds: float = 0.0


def definitions_dir(settings: BuildSettings) -> Path:
    if settings.definitions_dir is not None:
        return settings.definitions_dir
    return Path(str(resources.files("coldfront_launch.definitions")))


def section(text: str, name: str) -> list[str]:
    """The lines of one ``%section`` of a definition file."""
    lines: list[str] = []
    inside = False
    for line in text.splitlines():
        header = re.match(r"^%(\w+)", line)
        if header:
            inside = header.group(1) == name and not line[len(header.group(0)):].strip()
            continue
        if inside:
            lines.append(line)
    return lines


def header(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith("%"):
            break
        match = re.match(rf"^\s*{key}\s*:\s*(.+?)\s*$", line, re.IGNORECASE)
        if match:
            return match.group(1)
    return ""


def copied_files(definition: Path) -> list[Path]:
    """Every host file a definition's ``%files`` section copies in (globs expanded)."""
    text = definition.read_text()
    found: list[Path] = []
    for line in section(text, "files"):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        source = line.split()[0]
        matches = sorted(definition.parent.glob(source)) if any(c in source for c in "*?[") \
            else [definition.parent / source]
        if not matches or not all(m.exists() for m in matches):
            raise ConfigError(f"{definition.name} %files",
                              f"{source} does not exist next to the definition")
        for match in matches:
            found += sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() \
                else [match]
    return found


def declared_args(definition: Path) -> set[str]:
    """The names a definition's ``%arguments`` section declares."""
    return {line.split("=", 1)[0].strip()
            for line in section(definition.read_text(), "arguments") if "=" in line}


def build_args(settings: BuildSettings, definition: Path) -> dict[str, str]:
    """The ``--build-arg`` values cf-launch passes to one layer: ``coldfront_version`` (when
    set) to the layers whose ``%arguments`` declare it."""
    if settings.coldfront_version and "coldfront_version" in declared_args(definition):
        return {"coldfront_version": settings.coldfront_version}
    return {}


def layer_key(definition: Path, parent_key: str, args: dict[str, str] | None = None) -> str:
    digest = hashlib.sha256()
    digest.update(f"{FORMAT}\n{parent_key}\n".encode())
    for name, value in sorted((args or {}).items()):  # none: the key stays what it was
        digest.update(f"--build-arg {name}={value}\n".encode())
    digest.update(definition.read_bytes())
    for path in copied_files(definition):
        digest.update(f"\n{path.relative_to(definition.parent)}\n".encode())
        digest.update(path.read_bytes())
        digest.update(oct(path.stat().st_mode & 0o777).encode())
    return digest.hexdigest()[:16]


def resolve(settings: BuildSettings) -> list[Layer]:
    """Resolve the layer stack and every layer's key; validates the definitions."""
    folder = definitions_dir(settings)
    layers: list[Layer] = []
    parent: Layer | None = None
    for entry in settings.layers:
        # A shipped layer by name, or a site's own definition file by path.
        definition = Path(entry) if entry.endswith(".def") else folder / f"{entry}.def"
        name = definition.stem
        if not definition.is_file():
            known = sorted(p.stem for p in folder.glob("*.def"))
            raise ConfigError("build.layers", f"no definition {definition}",
                              f"known layers: {', '.join(known)}")
        bootstrap = header(definition.read_text(), "Bootstrap").lower()
        if bootstrap == "localimage" and parent is None:
            raise ConfigError("build.layers", f"{name} builds on a parent layer; list one first")
        key = layer_key(definition, parent.key if parent else "",
                        build_args(settings, definition))
        layer = Layer(name, definition, key,
                      settings.cache_dir / "layers" / f"{name}-{key}.sif", parent)
        layers.append(layer)
        parent = layer
    return layers


def build_options(settings: BuildSettings, layer: Layer) -> list[str]:
    """The ``apptainer build`` options for one layer."""
    options: list[str] = []
    if settings.fakeroot:
        options.append("--fakeroot")
    for bind in settings.binds:
        options += ["--bind", bind]
    if settings.ca_bundle is not None:
        options += ["--bind", f"{ca_folder(settings)}:{CA_MOUNT}"]
    if layer.parent is not None:
        options += ["--build-arg", f"parent={layer.parent.image}"]
    for name, value in {**build_args(settings, layer.definition),
                        **_label_args(layer)}.items():
        options += ["--build-arg", f"{name}={value}"]
    return options


def _label_args(layer: Layer) -> dict[str, str]:
    """The layer's key and cf-launch's version, for the layers whose ``%arguments``
    declare them (labels only: they are not part of the key)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        launcher = version("coldfront-launch")
    except PackageNotFoundError:  # run from a source tree
        launcher = "unknown"
    declared = declared_args(layer.definition)
    found = {"layer_key": layer.key, "launcher_version": launcher}
    return {k: val for k, val in found.items() if k in declared}


def ca_folder(settings: BuildSettings) -> Path:
    return settings.cache_dir / "ca"


def _stage_ca(settings: BuildSettings) -> None:
    if settings.ca_bundle is None:
        return
    folder = ca_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.ca_bundle, folder / CA_NAME)


Progress = Callable[[BuildEvent], None]


def build(settings: BuildSettings, force: bool = False,
          progress: Progress | None = None, publish: bool = True) -> Path:
    """Build what changed (or everything with ``force``); return the finished image: the
    ``images/<top>.sif`` link, or with ``publish=False`` the top layer's own file (the link,
    which other instances may boot, is left alone)."""
    report = progress or (lambda event: None)
    layers = resolve(settings)
    if force or not all(layer.cached for layer in layers):
        apptainer.locate()  # refuse before anything is printed, locked or logged
    with file_lock(settings.cache_dir / ".build.lock"):
        _stage_ca(settings)
        for index, layer in enumerate(layers, 1):
            if layer.cached and not force:
                report(BuildEvent("cached", layer, index, len(layers)))
                continue
            _build_layer(settings, layer, index, len(layers), report)
        return _publish(settings, layers[-1]) if publish else layers[-1].image


def _build_layer(settings: BuildSettings, layer: Layer, index: int, total: int,
                 report: Progress) -> None:
    report(BuildEvent("start", layer, index, total))
    began = time.monotonic()
    layer.image.parent.mkdir(parents=True, exist_ok=True)
    partial = layer.image.with_name(f".{layer.image.name}.partial")
    log_path = layer.image.with_suffix(".log")
    try:
        with log_path.open("w", encoding="utf-8") as log:
            def on_line(line: str) -> None:
                log.write(line + "\n")
                report(BuildEvent("line", layer, index, total, line))
            apptainer.build(layer.definition, partial, build_options(settings, layer),
                            layer.definition.parent, on_line)
    except BuildError as err:
        partial.unlink(missing_ok=True)
        err.hint = f"full build log: {log_path}"
        raise
    if not partial.is_file():
        raise BuildError(f"apptainer build of {layer.name} produced no image",
                         hint=f"full build log: {log_path}")
    os.replace(partial, layer.image)
    report(BuildEvent("done", layer, index, total, seconds=time.monotonic() - began))


def _publish(settings: BuildSettings, top: Layer) -> Path:
    link = settings.cache_dir / "images" / f"{top.name}.sif"
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(top.image)
    os.replace(tmp, link)
    return link
