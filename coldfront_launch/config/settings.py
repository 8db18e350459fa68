"""Launcher settings: defaults, TOML files, CLI overrides, all validated before anything runs.

:func:`load_settings` also reads the image pin ``upgrade`` left in the instance's state
folder (:mod:`coldfront_launch.state.pin`), so ``start`` boots the image the last upgrade
proved, not the one the settings name."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coldfront_launch.config import files, seams
from coldfront_launch.config import validate as v
from coldfront_launch.config.backup import BackupSettings, backup_from_mapping
from coldfront_launch.config.coldfront import ColdFrontSettings, coldfront_from_mapping
from coldfront_launch.config.resources import ResourceSettings, resources_from_mapping
from coldfront_launch.config.security import SecuritySettings, security_from_mapping
from coldfront_launch.errors import ConfigError
from coldfront_launch.state import pin as imagepin

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Amazon Linux 2023 ships Python 3.9
    import tomli as tomllib

SYSTEM_CONFIG = Path("/etc/cf-launch/config.toml")
LOCAL_CONFIG = Path("cf-launch.toml")
DEFAULT_STATE_ROOT = Path("/var/lib/cf-launch")
DEFAULT_CACHE_DIR = Path("/var/cache/cf-launch")


@dataclass(frozen=True)
class BuildSettings:
    """How ``cf-launch build`` turns layered definitions into one .sif."""

    layers: tuple[str, ...] = ("al2023-base", "coldfront")
    definitions_dir: Path | None = None  # None: the definitions shipped with cf-launch
    cache_dir: Path = DEFAULT_CACHE_DIR
    fakeroot: bool = False
    binds: tuple[str, ...] = ()
    ca_bundle: Path | None = None
    coldfront_version: str = ""  # "": the newest ColdFront on the index when the layer builds


@dataclass(frozen=True)
class Settings:
    """Everything one instance needs. Build with :func:`load_settings`."""

    name: str = "coldfront"
    image: Path | None = None  # None: the image ``cf-launch build`` produced
    hooks: tuple[str, ...] = ("bridge",)
    state_root: Path = DEFAULT_STATE_ROOT
    ready_timeout: float = 300.0
    stop_timeout: float = 60.0
    readiness_path: str = "/user/login"
    drift_check_interval: float = 30.0  # seconds between drift checks under `run`; 0: off
    writable_tmpfs: bool = True
    binds: tuple[str, ...] = ()
    build: BuildSettings = field(default_factory=BuildSettings)
    hook_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    coldfront: ColdFrontSettings = field(default_factory=ColdFrontSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    backup: BackupSettings = field(default_factory=BackupSettings)
    #: The image ``cf-launch upgrade`` pinned (not a setting: see
    #: :mod:`coldfront_launch.state.pin`).
    pinned_image: Path | None = None

    @property
    def state_dir(self) -> Path:
        """This instance's own folder: journal, lock, secrets, data."""
        return self.state_root / self.name

    @property
    def built_image(self) -> Path:
        """Where ``cf-launch build`` leaves the finished image."""
        return self.build.cache_dir / "images" / f"{Path(self.build.layers[-1]).stem}.sif"

    @property
    def configured_image(self) -> Path:
        """The image the settings name: ``image``, else what ``cf-launch build`` produced."""
        return self.image if self.image is not None else self.built_image

    @property
    def image_path(self) -> Path:
        """The image ``start`` boots: the last upgrade's, else the configured one."""
        return self.pinned_image or self.configured_image

    def hook_section(self, hook: str) -> dict[str, Any]:
        """The raw ``[hook.<hook>]`` table (hooks validate their own keys)."""
        return dict(self.hook_settings.get(hook, {}))

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with CLI flags applied; ``None`` values are ignored."""
        changes = {k: val for k, val in changes.items() if val is not None}
        if not changes:
            return self
        data = _to_raw(self)
        data.update(changes)
        return settings_from_mapping(data)


TOP_KEYS = {"name", "image", "hooks", "state_root", "ready_timeout", "stop_timeout",
            "readiness_path", "drift_check_interval", "writable_tmpfs", "binds", "build",
            "security", "coldfront", "resources", "backup"}
BUILD_KEYS = {"layers", "definitions_dir", "cache_dir", "fakeroot", "binds", "ca_bundle",
              "coldfront_version"}


def settings_from_mapping(data: dict[str, Any]) -> Settings:
    """Validate a merged mapping (TOML shape) into :class:`Settings`."""
    data = dict(data)
    hook_settings = data.pop("hook", None) or {}
    v.no_unknown_keys("", data, TOP_KEYS)
    if not isinstance(hook_settings, dict):
        raise ConfigError("hook", "must hold one table per hook, e.g. [hook.bridge]")
    for name, section in hook_settings.items():
        v.safe_text(f"hook.{v.key_name(name)}", name)
        v.table(f"hook.{name}", section)
    defaults = Settings()
    build = _build_from_mapping(data.get("build", {}))
    hooks = _hooks(data.get("hooks", list(defaults.hooks)))
    name = v.instance_name("name", data.get("name", defaults.name))
    state_root = v.bindable_path("state_root", data.get("state_root", defaults.state_root),
                                 kind="dir")
    if (state_root / name).resolve().parent != state_root.resolve():
        raise ConfigError("name", f"{name!r} would place its state outside {state_root}",
                          "choose another instance name")
    image = data.get("image")
    return Settings(
        name=name,
        image=v.path("image", image, kind="file") if image is not None else None,
        hooks=hooks,
        state_root=state_root,
        ready_timeout=v.positive_number("ready_timeout",
                                        data.get("ready_timeout", defaults.ready_timeout)),
        stop_timeout=v.positive_number("stop_timeout",
                                       data.get("stop_timeout", defaults.stop_timeout)),
        readiness_path=v.url_path("readiness_path",
                                  data.get("readiness_path", defaults.readiness_path)),
        drift_check_interval=v.interval("drift_check_interval",
                                        data.get("drift_check_interval",
                                                 defaults.drift_check_interval)),
        writable_tmpfs=v.boolean("writable_tmpfs",
                                 data.get("writable_tmpfs", defaults.writable_tmpfs)),
        binds=tuple(v.bind_spec(f"binds[{i}]", b)
                    for i, b in enumerate(v.string_list("binds", data.get("binds", [])))),
        build=build,
        hook_settings={k: dict(val) for k, val in hook_settings.items()},
        security=security_from_mapping(data.get("security", {})),
        coldfront=coldfront_from_mapping(data.get("coldfront", {})),
        resources=resources_from_mapping(data.get("resources", {})),
        backup=backup_from_mapping(data.get("backup", {})),
    )


def _hooks(value: Any) -> tuple[str, ...]:
    """The plugins to run, in order; a name given twice counts once."""
    names = v.string_list("hooks", value)
    if not names:
        raise ConfigError("hooks", "at least one hook is needed", 'e.g. hooks = ["bridge"]')
    for i, name in enumerate(names):
        if not v.INSTANCE_NAME.fullmatch(name):
            raise ConfigError(f"hooks[{i}]", f"{name!r} is not a plugin name",
                              "`cf-launch hooks` lists the installed plugins")
    return tuple(dict.fromkeys(names))


def _build_from_mapping(data: Any) -> BuildSettings:
    v.table("build", data, BUILD_KEYS)
    defaults = BuildSettings()
    layers = tuple(v.string_list("build.layers", data.get("layers", list(defaults.layers))))
    if not layers:
        raise ConfigError("build.layers", "at least one layer is needed")
    ca = data.get("ca_bundle")
    defs = data.get("definitions_dir")
    return BuildSettings(
        layers=layers,
        definitions_dir=v.path("build.definitions_dir", defs, must_exist=True, kind="dir")
        if defs else None,
        cache_dir=v.bindable_path("build.cache_dir", data.get("cache_dir", defaults.cache_dir),
                                  kind="dir"),
        fakeroot=v.boolean("build.fakeroot", data.get("fakeroot", defaults.fakeroot)),
        binds=tuple(v.bind_spec(f"build.binds[{i}]", b)
                    for i, b in enumerate(v.string_list("build.binds", data.get("binds", [])))),
        ca_bundle=v.bindable_path("build.ca_bundle", ca, must_exist=True, kind="file")
        if ca else None,
        coldfront_version=coldfront_version("build.coldfront_version",
                                            data.get("coldfront_version", "")),
    )


def coldfront_version(setting: str, value: Any) -> str:
    """A ColdFront version for pip (``1.1.10``), or "" for the newest."""
    if value == "":
        return ""
    if not isinstance(value, str) or not imagepin.VERSION.fullmatch(value):
        raise ConfigError(setting, f"{value!r} is not a version",
                          'e.g. "1.1.10" (see https://pypi.org/project/coldfront/#history)')
    return value


def _to_raw(settings: Settings) -> dict[str, Any]:
    b = settings.build
    return {
        "name": settings.name,
        "image": str(settings.image) if settings.image else None,
        "hooks": list(settings.hooks),
        "state_root": str(settings.state_root),
        "ready_timeout": settings.ready_timeout,
        "stop_timeout": settings.stop_timeout,
        "readiness_path": settings.readiness_path,
        "drift_check_interval": settings.drift_check_interval,
        "writable_tmpfs": settings.writable_tmpfs,
        "binds": list(settings.binds),
        "build": {
            "layers": list(b.layers),
            **({"definitions_dir": str(b.definitions_dir)} if b.definitions_dir else {}),
            "cache_dir": str(b.cache_dir),
            "fakeroot": b.fakeroot,
            "binds": list(b.binds),
            **({"ca_bundle": str(b.ca_bundle)} if b.ca_bundle else {}),
            **({"coldfront_version": b.coldfront_version} if b.coldfront_version else {}),
        },
        "hook": settings.hook_settings,
        "security": settings.security.to_raw(),
        "coldfront": settings.coldfront.to_raw(),
        "resources": settings.resources.to_raw(),
        "backup": settings.backup.to_raw(),
    }


def read_toml(path: Path, setting: str = "settings file") -> dict[str, Any]:
    """Parse one TOML file. Every way it can fail (not a regular file, over 1 MiB, not
    UTF-8, bad syntax, nested too deep, an integer TOML cannot hold) is a
    :class:`ConfigError` naming the file (``setting``: what gave it, for the first two)."""
    raw = files.read_bounded(setting, path, files.FILE_LIMIT)
    text = _decode(path, raw)
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), f"invalid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(str(path), "invalid TOML: arrays or tables nested too deeply",
                          f"settings nest at most {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as err:
        if "integer string conversion" in str(err):  # over sys.get_int_max_str_digits()
            raise ConfigError(str(path), "a whole number of thousands of digits is beyond "
                              "the 64-bit range of TOML integers", "give a smaller number"
                              ) from None
        raise ConfigError(str(path), f"invalid TOML: {str(err).split(':')[0]}") from None
    _check_shape(path, data)
    return data


#: The deepest nesting of tables and arrays a settings file may have.
MAX_DEPTH = 32
#: TOML's integers are 64-bit signed (toml.io: "Integer").
INT64 = (-(1 << 63), (1 << 63) - 1)
#: Byte-order marks of the encodings a settings file is sometimes saved in by mistake.
BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
        (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def _decode(path: Path, raw: bytes) -> str:
    """The file's text: UTF-8 (a UTF-8 byte-order mark is dropped), else an error that
    names the encoding problem."""
    hint = "save it as UTF-8 (e.g. iconv -f {} -t UTF-8 FILE > NEW)"
    for bom, name in BOMS:
        if raw.startswith(bom):
            raise ConfigError(str(path), f"is not UTF-8 (it starts with a {name} "
                              "byte-order mark)", hint.format(name))
    if b"\x00" in raw:
        raise ConfigError(str(path), "is not UTF-8 text (it holds NUL bytes: UTF-16 or "
                          "UTF-32 without a byte-order mark?)", hint.format("UTF-16"))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(str(path), f"is not UTF-8 (byte 0x{raw[err.start]:02x} on line "
                          f"{line}; Latin-1 or another 8-bit encoding?)",
                          hint.format("LATIN1")) from None


def _check_shape(path: Path, data: dict[str, Any]) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and integers beyond 64 bits, which
    later code (and TOML itself) does not expect."""
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack:
        where, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(str(path), f"{where}: nested more than {MAX_DEPTH} levels deep",
                              "flatten the tables and arrays")
        if isinstance(value, int) and not isinstance(value, bool) and \
                not INT64[0] <= value <= INT64[1]:
            raise ConfigError(str(path), f"{where}: {v.shown(value)} is beyond the 64-bit "
                              "range of TOML integers", "give a smaller number")
        if isinstance(value, dict):
            stack += [(f"{where}.{v.key_name(k)}" if where else v.key_name(k), item,
                       depth + 1) for k, item in value.items()]
        elif isinstance(value, list):
            stack += [(f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value)]


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_files(explicit: Path | None) -> list[Path]:
    """The files read, lowest precedence first: /etc, ./cf-launch.toml, then ``--config``."""
    system = Path(seams.seam("CF_LAUNCH_SYSTEM_CONFIG") or SYSTEM_CONFIG)
    found = [p for p in (system, LOCAL_CONFIG) if p.exists()]  # not a file: refused
    if explicit is not None:
        if explicit.is_dir():
            raise ConfigError("--config", f"{explicit} is a directory",
                              "give the path of a TOML file")
        if not explicit.exists():
            raise ConfigError("--config", f"{explicit} does not exist",
                              "give the path of a TOML file")
        found.append(explicit)
    return found


def load_settings(explicit: Path | None = None, **overrides: Any) -> Settings:
    """Merge the config files, then apply CLI overrides, then validate everything."""
    data: dict[str, Any] = {}
    for path in config_files(explicit):
        data = _merge(data, read_toml(path, "--config" if path == explicit else
                                      "settings file"))
    settings = settings_from_mapping(data).with_overrides(**overrides)
    return with_pin(settings)


def with_pin(settings: Settings) -> Settings:
    """The settings with the image the instance's last upgrade pinned (if it still applies)."""
    pinned = imagepin.pinned_image(settings.state_dir, settings.configured_image)
    return replace(settings, pinned_image=pinned) if pinned != settings.pinned_image \
        else settings


def replace_build(settings: Settings, **changes: Any) -> Settings:
    """A copy with some build settings changed (the CLI's build flags), validated like
    the same keys in a file."""
    changes = {k: val for k, val in changes.items() if val is not None}
    if not changes:
        return settings
    raw = _to_raw(settings)["build"]
    raw.update({k: list(val) if isinstance(val, tuple) else val for k, val in changes.items()})
    return replace(settings, build=_build_from_mapping(raw))
