"""cf-launch plugin `site-audit`.

Active when named: `cf-launch start --hook bridge --hook site-audit`, or
`hooks = ["bridge", "site-audit"]` in cf-launch.toml. Its settings:

    [hook.site-audit]
    folder = "/etc/cf-launch-site-audit"   # where pre_start writes site-audit.conf
    requires = []                          # programs the host must have (preflight)

Every hook is optional: delete what you do not need, uncomment what you do. Each hook's
contract: docs/hooks.md of cf-launch.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from coldfront_launch import Bind, ConfigError, Problem, hookimpl

NAME = "site-audit"
DEFAULTS: dict[str, Any] = {"folder": "/etc/cf-launch-site-audit", "requires": []}


def settings(ctx: Any) -> dict[str, Any]:
    """The [hook.site-audit] table with the defaults filled in ({} when it is absent)."""
    return {**DEFAULTS, **ctx.section(NAME)}


@hookimpl
def cf_launch_validate(ctx):
    """Check the settings before anything changes; raise ConfigError naming the setting."""
    for key in ctx.section(NAME):
        if key not in DEFAULTS:
            raise ConfigError(f"hook.{NAME}.{key}", "unknown setting",
                              "known: " + ", ".join(DEFAULTS))
    found = settings(ctx)
    if not isinstance(found["folder"], str) or not found["folder"].startswith("/"):
        raise ConfigError(f"hook.{NAME}.folder", f"{found['folder']!r} is not an absolute path")
    if not isinstance(found["requires"], list) or \
            not all(isinstance(p, str) for p in found["requires"]):
        raise ConfigError(f"hook.{NAME}.requires", "must be a list of program names")


@hookimpl
def cf_launch_preflight(ctx):
    """What the host lacks, shown by `cf-launch doctor --hook site-audit`. Problem(check,
    message, hint="", fatal=True): a fatal problem stops `start`, fatal=False warns."""
    return [Problem(NAME, f"{program} is not installed", f"install {program}")
            for program in settings(ctx)["requires"] if shutil.which(program) is None]


@hookimpl
def cf_launch_binds(ctx):
    """Files bound into the container: read-only unless readonly=False; `content` is
    written under the state folder (removed on stop), `source` may be any host file."""
    return [Bind(f"/etc/cf-launch-{NAME}.conf", content=f"# written by the {NAME} plugin\n")]


@hookimpl
def cf_launch_pre_start(ctx, host):
    """Prepare the host, only through `host`: each change is journaled, shown by
    `cf-launch plan` and undone by `stop`. Missing parent folders are created, and removed
    on stop."""
    folder = Path(settings(ctx)["folder"])
    host.write_file(folder / f"{NAME}.conf", f"instance = {ctx.settings.name}\n", 0o644)


# @hookimpl
# def cf_launch_start_options(ctx):
#     """Options added to `apptainer instance start`, after the other plugins' options."""
#     return ["--hostname", "coldfront.example.org"]


# @hookimpl
# def cf_launch_check_instance(ctx, instance):
#     """Only `cf-launch attach`: did the site's own `apptainer instance start` get this
#     plugin's options? Return a Problem for each one missing; attach then refuses."""
#     return []


# @hookimpl
# def cf_launch_post_start(ctx, host, instance):
#     """The instance runs. instance.ip is "" without a CNI network (override), and a
#     placeholder under `cf-launch plan`: check before you use it."""
#     if instance.ip:
#         ...


# @hookimpl
# def cf_launch_readiness_endpoint(ctx, instance):
#     """Where ColdFront answers HTTP; None leaves it to other plugins."""
#     return None


# @hookimpl
# def cf_launch_pre_stop(ctx, instance):
#     """Before the instance stops (instance is None if it is gone). Host changes made
#     through `host` are undone by cf-launch: nothing to do for those."""


# @hookimpl
# def cf_launch_post_stop(ctx):
#     """After the instance stopped and every change was undone."""
