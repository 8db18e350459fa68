"""Hook markers and specifications. Plugins implement these with ``@hookimpl``.

A *plugin* is a module that implements hooks; a *hook* is one of the ``cf_launch_*``
functions below, declared in the order they run. Every hook receives a
:class:`~coldfront_launch.types.LaunchContext`. Only the plugins named for a launch
(``--hook NAME`` or ``hooks = [...]``; the option keeps its old name) and cf-launch's
internal ``core`` plugin are called. Hooks change the host only through the
:class:`~coldfront_launch.changes.host.HostChanges` they are handed, so ``cf-launch plan`` shows
every change and ``stop`` undoes every change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from coldfront_launch.changes.host import HostChanges
    from coldfront_launch.types import Bind, Endpoint, InstanceInfo, LaunchContext, Problem

PROJECT = "coldfront_launch"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def cf_launch_validate(ctx: LaunchContext) -> None:
    """Check this hook's ``[hook.<name>]`` settings and its fit with the other active hooks.

    Runs before anything changes. Raise :class:`~coldfront_launch.errors.ConfigError`
    naming the setting.

    :param ctx: the launch context.
    """


@hookspec
def cf_launch_preflight(ctx: LaunchContext) -> list[Problem]:
    """Check the host for what this hook needs; used by ``start`` and ``cf-launch doctor``.

    :param ctx: the launch context.
    :return: the problems found (an empty list when all is well). ``start`` refuses to run
        while any fatal problem remains.
    """
    raise NotImplementedError


@hookspec
def cf_launch_binds(ctx: LaunchContext) -> list[Bind]:
    """Contribute files to bind into the container (systemd drop-ins, config files, masks).

    :param ctx: the launch context.
    :return: the binds, read-only unless ``readonly=False``. ``content`` is written under
        the state folder and removed on stop; ``source`` may be any existing host path.
    """
    raise NotImplementedError


@hookspec
def cf_launch_pre_start(ctx: LaunchContext, host: HostChanges) -> None:
    """Prepare the host before the instance starts (network config, sysctls, firewall).

    :param ctx: the launch context.
    :param host: the only way to change the host; every change is journaled and undone.
    """


@hookspec
def cf_launch_start_options(ctx: LaunchContext) -> list[str]:
    """Contribute options to ``apptainer instance start`` (e.g. ``--net``, ``--netns-path``).

    :param ctx: the launch context.
    :return: the options, in order.
    """
    raise NotImplementedError


@hookspec
def cf_launch_check_instance(ctx: LaunchContext, instance: InstanceInfo) -> list[Problem]:
    """Check that an instance someone else started got this plugin's options (``attach``).

    ``cf-launch prepare`` printed the options; a site's own ``apptainer instance start``
    should have used them. Return what is missing, so ``attach`` refuses before it changes
    anything (``start`` does not call this hook: it passes the options itself).

    :param ctx: the launch context.
    :param instance: the running instance, as Apptainer lists it.
    :return: the problems found (an empty list when the instance fits).
    """
    raise NotImplementedError


@hookspec
def cf_launch_post_start(ctx: LaunchContext, host: HostChanges, instance: InstanceInfo) -> None:
    """Finish host setup once the instance runs and its address, if any, is known.

    :param ctx: the launch context.
    :param host: as for :func:`cf_launch_pre_start`.
    :param instance: the running instance; ``instance.ip`` is empty without a CNI network.
        Under ``plan`` it is a placeholder.
    """


@hookspec(firstresult=True)
def cf_launch_readiness_endpoint(ctx: LaunchContext, instance: InstanceInfo) -> Endpoint | None:
    """Say where ColdFront answers HTTP once ready.

    ``firstresult``: the first hook that returns an endpoint decides; return ``None`` to
    leave it to others. With no answer at all, cf-launch probes 127.0.0.1:80.

    :param ctx: the launch context.
    :param instance: the running instance.
    """


@hookspec
def cf_launch_pre_stop(ctx: LaunchContext, instance: InstanceInfo | None) -> None:
    """Run before the instance stops (host changes are undone by cf-launch afterwards).

    :param ctx: the launch context.
    :param instance: the running instance, or ``None`` if it is already gone.
    """


@hookspec
def cf_launch_post_stop(ctx: LaunchContext) -> None:
    """Run after the instance stopped and every journaled host change was undone.

    :param ctx: the launch context.
    """
