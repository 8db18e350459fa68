"""``cf-launch upgrade``: a new ColdFront image, proven before it is kept.

Build the new image (or take the one given), stop the instance, back its data up, boot the
new image (ColdFront's migrations run at boot) and wait until it answers. Only then is it
pinned (:mod:`coldfront_launch.state.pin`), with the image it replaced kept as ``previous``.
If it never answers: stop it, restore the backup (the data the new image touched is kept
beside it), boot the previous image again and say so. Going back never migrates a database
down.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coldfront_launch import apptainer
from coldfront_launch.apptainer import imageinfo
from coldfront_launch.apptainer import layers as builder
from coldfront_launch.coldfront import env as siteenv
from coldfront_launch.coldfront.appdata import ENV_FILE
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import (
    ConfigError,
    LaunchError,
    LockedError,
    NotRunningError,
    RollbackFailedError,
    RolledBackError,
)
from coldfront_launch.lifecycle.launcher import Launcher
from coldfront_launch.locks import try_lock
from coldfront_launch.operations import archive, backup, restore
from coldfront_launch.state import pin as imagepin
from coldfront_launch.state import record
from coldfront_launch.state.instance import InstanceState
from coldfront_launch.state.pin import Pin, PinnedImage

Report = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    """What the admin asked for: a version to build, or a ready image; a readiness limit."""

    coldfront_version: str | None = None
    image: Path | None = None
    ready_timeout: float | None = None
    check: bool = False  # only say which version an upgrade would bring; change nothing
    rollback: bool = False  # go back to the image (and data) from before the last upgrade


def upgrade(settings: Settings, request: Request, report: Report | None = None,
            progress: builder.Progress | None = None) -> dict[str, Any]:
    """Upgrade the instance; see the module docstring. Returns what was done."""
    say = report or (lambda _message: None)
    if request.check:
        return check(settings, request, say)  # changes nothing: no lock, no refusals
    _refuse_early(settings, request)
    lock = settings.state_dir / ".upgrade.lock"
    with try_lock(lock) as held:
        if not held:
            raise LockedError(f"another `cf-launch upgrade` of {settings.name} is running",
                              "wait for it to finish")
        if request.rollback:
            return roll_back(settings, request, say)
        return _upgrade(settings, request, say, progress)


def check(settings: Settings, request: Request, say: Report) -> dict[str, Any]:
    """``upgrade --check``: the version an upgrade would bring (the one asked, else the
    settings', else the newest on the index), against the running one; nothing is built."""
    _running, current = _current(settings)
    wanted = imageinfo.coldfront_version(request.image) if request.image is not None \
        else _wanted_version(settings, request, current, say)
    newer = imagepin.is_older(current.coldfront_version, wanted)
    say(f"{settings.name} runs ColdFront {current.coldfront_version or '?'}; "
        + (f"`cf-launch upgrade` would bring {wanted}" if newer else
           f"{wanted} is "
           f"{'the same' if current.coldfront_version == wanted else 'not newer'}"))
    return {"name": settings.name, "from": _json(current),
            "to": {"image": None, "coldfront_version": wanted}, "upgraded": False,
            "available": newer}


def _current(settings: Settings) -> tuple[bool, PinnedImage]:
    """Whether the instance runs, and the image it runs (resolved) with its ColdFront."""
    running = apptainer.find(settings.name) is not None
    image = current_image(settings)
    return running, PinnedImage(str(image.resolve()), imageinfo.running_version(settings.name)
                                if running else imageinfo.coldfront_version(image))


def _wanted_version(settings: Settings, request: Request, current: PinnedImage,
                    say: Report) -> str:
    """The version asked, else the settings', else the newest on the package index."""
    version = request.coldfront_version or settings.build.coldfront_version
    if not version:
        say("asking the package index for the newest ColdFront")
        version = imageinfo.newest_on_index(Path(current.image), settings.build.ca_bundle)
    return version


def _refuse_early(settings: Settings, request: Request) -> None:
    """Everything that can be refused before anything is built, stopped or written."""
    supervisor = InstanceState(settings.state_dir).supervisor()
    if supervisor:
        raise LockedError(
            f"cf-launch run (pid {supervisor}) supervises {settings.name}",
            f"stop the service (systemctl stop cf-launch@{settings.name}), run `cf-launch "
            f"upgrade`, then start the service again")
    pin = imagepin.read(settings.state_dir)
    if pin is not None and not pin.proven and not request.rollback:
        raise ConfigError("upgrade", f"the upgrade of {settings.name} to "
                          f"{pin.current.image} was interrupted",
                          "`cf-launch start` boots it (the upgrade completes once ColdFront "
                          "answers); or go back: `cf-launch upgrade --rollback`")
    if request.rollback:
        _pin_to_roll_back(settings)
        return
    if request.image is None and settings.image is not None:
        raise ConfigError("image", f"the settings name a fixed image ({settings.image}), "
                          "so there is nothing for upgrade to build",
                          "give the new image: `cf-launch upgrade --image NEW.sif`; or "
                          "remove `image` to let cf-launch build it from [build]")
    if request.image is not None and not request.image.is_file():
        raise ConfigError("--image", f"{request.image} is not a file", "give a .sif image")
    if not (settings.state_dir / ENV_FILE).is_file():
        raise ConfigError("name", f"instance {settings.name} has never been started, so "
                          "there is nothing to upgrade",
                          "start it with `cf-launch start` (it boots the newest image)")
    image = current_image(settings)
    if not image.is_file():
        raise ConfigError("image", f"{image}, the image {settings.name} "
                          "runs, does not exist", "upgrade needs it to roll back to; build "
                          "it again with `cf-launch build`")


def current_image(settings: Settings) -> Path:
    """The image the instance runs: the running one's, else the last upgrade's (even when
    the layers have changed since), else the one the settings name."""
    if apptainer.find(settings.name) is not None:
        started = record.read(settings.state_dir).image
        if started:
            return Path(started)
    pin = imagepin.read(settings.state_dir)
    return Path(pin.current.image) if pin is not None else settings.image_path


def _upgrade(settings: Settings, request: Request, say: Report,
             progress: builder.Progress | None) -> dict[str, Any]:
    was_running, current = _current(settings)
    target = _target(settings, request, current, say, progress)
    summary: dict[str, Any] = {"name": settings.name, "from": _json(current),
                               "to": _json(target), "upgraded": False}
    if Path(target.image) == Path(current.image):
        say(f"{settings.name} already runs {target.image} (ColdFront "
            f"{target.coldfront_version or '?'}): nothing to upgrade")
        return summary
    _refuse_going_back(settings, target.coldfront_version, current)
    external = external_database_note(settings)
    if external:
        say(external)
    say(f"upgrading {settings.name}: ColdFront {current.coldfront_version or '?'} -> "
        f"{target.coldfront_version or '?'} ({target.image})")
    before = replace(settings, pinned_image=Path(current.image))
    if was_running:
        Launcher(before, say).stop()
    saved = None
    if not external:
        try:
            saved = backup.backup(before, _backup_path(settings), report=say)["path"]
        except LaunchError as err:
            if was_running:
                say(f"the backup failed; starting {settings.name} again on its image")
                Launcher(before, say).start(wait=True)
            raise LaunchError(f"upgrade of {settings.name} stopped before it changed "
                              f"anything: the backup failed: {err}", err.hint) from None
        summary["backup"] = saved
    upgraded = replace(settings, pinned_image=Path(target.image),
                       ready_timeout=request.ready_timeout or settings.ready_timeout)
    old = imagepin.read(settings.state_dir)
    if saved is not None:  # the one a failed upgrade's pin (``old``) names stays too
        summary["pruned_backups"] = prune_backups(
            settings, {saved, *([old.backup] if old is not None and old.backup else [])}, say)
    # Pinned before it boots (unproven), so that an upgrade killed from here on leaves the
    # instance on the image its data may have been migrated by; `start` proves it.
    trying = Pin(target, str(settings.configured_image), current, _now(), saved, proven=False)
    imagepin.write(settings.state_dir, trying)
    try:
        started = Launcher(upgraded, say, upgrading=True).start(wait=True)
    except (LaunchError, KeyboardInterrupt) as err:
        cause = err if isinstance(err, LaunchError) else LaunchError("interrupted (Ctrl-C)")
        _roll_back(before, upgraded, current, target, saved, was_running, cause, say, old)
        raise AssertionError("unreachable") from None  # _roll_back always raises
    imagepin.write(settings.state_dir, replace(trying, proven=True))
    summary.update(upgraded=True, url=started.readiness.url if started.readiness else "",
                   removed=prune(settings, old, keep={target.image, current.image}, say=say))
    say(f"{settings.name} runs ColdFront {target.coldfront_version or '?'}; the previous "
        f"image is kept for a rollback until the next upgrade: {current.image}")
    if not was_running:
        say(f"stopping {settings.name} again, as it was before the upgrade")
        Launcher(upgraded, say, upgrading=True).stop()
    summary["running"] = was_running
    return summary


def external_database_note(settings: Settings) -> str | None:
    """What ``upgrade`` says before it starts when the database is not the SQLite file in
    the data folder (None when it is): no data rollback, back it up first."""
    external = siteenv.external_database(settings)
    if external is None:
        return None
    return (f"note: ColdFront's database is external ({external}): if the upgrade fails, "
            "only the image is rolled back, never the database. Back the database up first "
            "(e.g. pg_dump)")


def _refuse_going_back(settings: Settings, version: str | None,
                       current: PinnedImage) -> None:
    if imagepin.is_older(version, current.coldfront_version):
        raise ConfigError("--coldfront-version", f"ColdFront {version} is older than "
                          f"{current.coldfront_version}, which {settings.name} runs: an "
                          "upgrade never goes back (migrations are not undone)",
                          "to go back, restore a backup taken before the newer version "
                          "(`cf-launch restore`) and start the image that made it")


def _target(settings: Settings, request: Request, current: PinnedImage, say: Report,
            progress: builder.Progress | None) -> PinnedImage:
    """The image to upgrade to: the one given, or built for the version asked (else the
    one in the settings, else the newest on the index)."""
    if request.image is not None:
        image = request.image.resolve()
        return PinnedImage(str(image), imageinfo.coldfront_version(image))
    version = _wanted_version(settings, request, current, say)
    _refuse_going_back(settings, version, current)  # before an image is built for nothing
    say(f"building the image for ColdFront {version}")
    build = replace(settings.build, coldfront_version=version)
    image = builder.build(build, progress=progress, publish=False)
    found = imageinfo.coldfront_version(image)
    if found is not None and found != version:
        raise LaunchError(f"the image built for ColdFront {version} holds ColdFront {found}",
                          f"check the layers in [build] (one of them installs ColdFront "
                          f"itself); the image is {image}")
    return PinnedImage(str(image), found or version)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


PRE_UPGRADE = "-before-upgrade.tar.gz"


def _backup_path(settings: Settings) -> Path:
    folder = settings.state_dir / backup.BACKUPS
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{settings.name}-{archive.stamp(time.time())}{PRE_UPGRADE}"


def prune_backups(settings: Settings, keep: set[str], say: Report) -> list[str]:
    """Remove the instance's pre-upgrade backups beyond the newest ``[backup] keep`` (by
    the time in their names): only regular files named as :func:`_backup_path` names
    them, never another file of the folder, nor one in ``keep``."""
    folder = settings.state_dir / backup.BACKUPS
    named = re.compile(re.escape(settings.name) + r"-(\d{8}T\d{6}Z)" + re.escape(PRE_UPGRADE))
    try:
        found = sorted(((m.group(1), p) for p in folder.iterdir()
                        if (m := named.fullmatch(p.name)) and p.is_file()
                        and not p.is_symlink()), reverse=True)
    except OSError:
        return []
    kept = {str(Path(path).resolve()) for path in keep}
    removed = []
    for _stamp, path in found[settings.backup.keep:]:
        if str(path.resolve()) in kept:
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as err:  # the upgrade goes on; the file stays
            say(f"could not remove {path}: {err.strerror or err}")
            continue
        removed.append(str(path))
    if removed:
        say(f"removed {len(removed)} older pre-upgrade backup{'s' * (len(removed) > 1)} "
            f"([backup] keep = {settings.backup.keep}): {', '.join(removed)}")
    return removed


def _roll_back(settings: Settings, upgraded: Settings, current: PinnedImage,
               target: PinnedImage, saved: str | None, was_running: bool, cause: LaunchError,
               say: Report, old: Pin | None) -> None:
    """Stop the new image, put the data and the pin back, boot the previous image
    (``settings`` boot it); always raises."""
    say(f"the new image failed: {cause}; rolling back to {current.image}")
    kept: dict[str, str] = {}
    try:
        with contextlib.suppress(NotRunningError):
            Launcher(upgraded, say, upgrading=True).stop()
        if saved is not None:
            kept = restore.restore(settings, Path(saved), force=True, report=say)["replaced"]
        if old is None:
            imagepin.remove(settings.state_dir)
        else:
            imagepin.write(settings.state_dir, old)
        Launcher(settings, say).start(wait=True)
        if not was_running:
            Launcher(settings, say).stop()
    except LaunchError as err:
        where = f"the data from before the upgrade is in {saved}: `cf-launch restore --force " \
                f"{saved}`, then `cf-launch start`" if saved else \
                "the database is external: check it before starting again"
        raise RollbackFailedError(
            f"upgrade of {settings.name} failed ({cause}), and so did the rollback: {err}",
            f"fix that cause; {where}; the previous image is {current.image}",
            "\n".join(filter(None, (cause.details, err.details)))) from None
    data = "and the data from before the upgrade" if saved else \
        "(the external database is as the new image left it)"
    aside = "; the data the new image touched is kept as " + ", ".join(kept.values()) \
        if kept else ""
    raise RolledBackError(
        f"upgrade of {settings.name} to ColdFront {target.coldfront_version or '?'} failed "
        f"({cause}); rolled back: {settings.name} runs {current.image} (ColdFront "
        f"{current.coldfront_version or '?'}) {data} again",
        f"the new image's boot is in its journal: journalctl --directory "
        f"{settings.state_dir / 'journal'}; the new image stays at {target.image}{aside}",
        cause.details)


def roll_back(settings: Settings, request: Request, say: Report) -> dict[str, Any]:
    """``upgrade --rollback``: back to the image from before the last upgrade, with the data
    of the backup taken then (what was written since is kept beside it, not lost)."""
    pin, previous = _pin_to_roll_back(settings)
    backup_path = pin.backup
    if not Path(previous.image).is_file():
        raise ConfigError("--rollback", f"the image from before the upgrade, {previous.image}, "
                          "is gone", "nothing was changed")
    if backup_path is not None and not Path(backup_path).is_file():
        raise ConfigError("--rollback", f"the backup taken before the upgrade, {backup_path}, "
                          "is gone", "nothing was changed; restore another backup by hand")
    was_running = apptainer.find(settings.name) is not None
    say(f"rolling {settings.name} back: ColdFront {pin.current.coldfront_version or '?'} -> "
        f"{previous.coldfront_version or '?'} ({previous.image})"
        + (f", with the data of {backup_path}; what was written since is kept beside it"
           if backup_path else "; the external database stays as it is"))
    now = replace(settings, pinned_image=Path(pin.current.image))
    back = replace(settings, pinned_image=Path(previous.image),
                   ready_timeout=request.ready_timeout or settings.ready_timeout)
    if was_running:
        Launcher(now, say, upgrading=True).stop()
    kept: dict[str, str] = {}
    if backup_path is not None:
        kept = restore.restore(back, Path(backup_path), force=True, report=say)["replaced"]
    imagepin.write(settings.state_dir, Pin(previous, pin.configured, None, _now()))
    if was_running:
        try:
            Launcher(back, say, upgrading=True).start(wait=True)
        except LaunchError as err:
            raise RollbackFailedError(
                f"{settings.name} rolled back to {previous.image}, but it did not start: {err}",
                f"the data replaced is kept as {', '.join(kept.values()) or '-'}; {err.hint}",
                err.details) from None
    return {"name": settings.name, "from": _json(pin.current), "to": _json(previous),
            "upgraded": False, "rolled_back": True, "backup": backup_path, "kept": kept,
            "running": was_running}


def _pin_to_roll_back(settings: Settings) -> tuple[Pin, PinnedImage]:
    """The pin ``--rollback`` goes back from, and the image it goes back to."""
    pin = imagepin.read(settings.state_dir)
    if pin is None or pin.previous is None:
        raise ConfigError("--rollback", f"{settings.name} has no upgrade to roll back",
                          "`cf-launch status --json` shows the last upgrade under `upgrade`")
    return pin, pin.previous


def prune(settings: Settings, old: Pin | None, keep: set[str], say: Report) -> list[str]:
    """Remove the image two upgrades back (``old.previous``) once nothing needs it: only a
    layer file in cf-launch's own build cache, never the published image, an image another
    instance pins or runs, or one the caller keeps."""
    if old is None or old.previous is None:
        return []
    candidate = Path(old.previous.image)
    layers = (settings.build.cache_dir / "layers").resolve()
    if (str(candidate) in keep or candidate.parent != layers
            or not builder.LAYER_FILE.match(candidate.name) or not candidate.is_file()
            or candidate in _in_use(settings)):
        return []
    candidate.unlink()
    candidate.with_suffix(".log").unlink(missing_ok=True)
    say(f"removed {candidate} (the image two upgrades back)")
    return [str(candidate)]


def _in_use(settings: Settings) -> set[Path]:
    """Images something may still boot: published links, every instance's pin (current and
    previous), and the images of running instances."""
    used = {link.resolve() for link in (settings.build.cache_dir / "images").glob("*.sif")}
    for state in (p for p in settings.state_root.iterdir() if p.is_dir()) \
            if settings.state_root.is_dir() else ():
        try:
            pin = imagepin.read(state)
        except ConfigError:
            continue
        if pin is not None:
            used |= {Path(p.image) for p in (pin.current, pin.previous) if p is not None}
    used |= {Path(info.image).resolve() for info in apptainer.list_instances() if info.image}
    return used


def _json(image: PinnedImage) -> dict[str, Any]:
    return {"image": image.image, "coldfront_version": image.coldfront_version}

