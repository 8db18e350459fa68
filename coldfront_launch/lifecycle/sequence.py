"""The launch sequence, written once: ``plan`` runs it against a recorder, ``start``
against the real host, and embedding runs its halves on their own.

    validate → preflight → binds → pre_start → start_options   (before ``instance start``)
    post_start → readiness_endpoint                            (after it)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coldfront_launch import plugins
from coldfront_launch.changes.host import HostChanges
from coldfront_launch.coldfront import appdata, hardening, scheduler, tls
from coldfront_launch.config.settings import Settings
from coldfront_launch.errors import ConfigError
from coldfront_launch.types import Bind, Endpoint, InstanceInfo, LaunchContext, Problem

BIND_DIR = "binds"
CGROUP_BIND = ["-B", "/sys/fs/cgroup"]
DEFAULT_ENDPOINT = Endpoint("127.0.0.1", 80)


@dataclass
class Prepared:
    """The first half's result: what ``apptainer instance start`` needs, in parts.

    ``boot`` is how cf-launch itself starts the instance (``--boot``, the cgroup folder,
    ``--writable-tmpfs``); ``core`` the ``[resources]`` limits and the core's binds
    (ColdFront's data, certificates and env file, the settings' binds); ``plugins`` what
    the active plugins contribute (their binds, then their options)."""

    boot: list[str] = field(default_factory=list)
    core: list[str] = field(default_factory=list)
    plugins: list[str] = field(default_factory=list)
    bind_specs: list[str] = field(default_factory=list)

    @property
    def options(self) -> list[str]:
        """Everything, in the order ``start`` passes it."""
        return [*self.boot, *self.core, *self.plugins]

    def for_embedding(self, only_hooks: bool = False) -> list[str]:
        """What a site's own ``apptainer instance start --boot`` must add."""
        return list(self.plugins) if only_hooks else [*CGROUP_BIND, *self.core, *self.plugins]


@dataclass
class LaunchSequence:
    """One launch of one instance with a set of plugins."""

    settings: Settings
    hooks: plugins.Hooks
    ctx: LaunchContext

    @classmethod
    def create(cls, settings: Settings, names: tuple[str, ...] | None = None,
               planning: bool = False, missing_ok: bool = False) -> LaunchSequence:
        """``missing_ok``: plugins that cannot load are left out (``stop``, ``detach``:
        the journal is undone without them)."""
        active = names or settings.hooks
        hooks = plugins.Hooks(active, missing_ok=missing_ok)
        return cls(settings, hooks, LaunchContext(settings, hooks.active, settings.state_dir,
                                                  planning))

    # --- before instance start -------------------------------------------------------

    def validate(self) -> list[Problem]:
        """Every setting of the core and of the active plugins; returns warnings.

        A ``[hook.NAME]`` section for a plugin that is not installed is an error (a typo,
        usually); one for a plugin that is installed but failed or blocked, a warning."""
        warnings = [Problem("plugins", message, fatal=False)
                    for message in plugins.load().warnings]
        for name in self.settings.hook_settings:
            why = plugins.unavailable(name)
            if why == "not installed":
                raise ConfigError(f"hook.{name}", f"no plugin named {name!r} is installed",
                                  f"known plugins: {', '.join(plugins.available())}")
            if why and name not in self.ctx.hooks:
                warnings.append(Problem(f"hook.{name}", f"settings for plugin {name}, which "
                                        f"is {why}", "fix the plugin, or remove the section",
                                        fatal=False))
        self.hooks.validate(self.ctx)
        return warnings

    def preflight(self) -> list[Problem]:
        return self.hooks.preflight(self.ctx)

    def before_start(self, host: HostChanges) -> Prepared:
        """binds → pre_start → start_options: the host is ready for ``instance start``."""
        core_specs = self._bind_specs(host, [*hardening.binds(self.settings),
                                             *tls.binds(self.settings),
                                             *scheduler.binds(self.settings),
                                             Bind(appdata.JOURNALD_DROPIN,
                                                  content=appdata.JOURNALD_CONF)])
        bind_specs = self._bind_specs(host, self.hooks.binds(self.ctx))
        self.hooks.pre_start(self.ctx, host)
        boot = ["--boot", *CGROUP_BIND] + (["--writable-tmpfs"] if self.settings.writable_tmpfs
                                           else [])
        core: list[str] = self.settings.resources.apptainer_options()
        for spec in [*appdata.binds(self.settings.state_dir), *self.settings.binds,
                     *core_specs]:
            core += ["--bind", spec]
        plugins = [word for spec in bind_specs for word in ("--bind", spec)]
        return Prepared(boot, core, plugins + self.hooks.start_options(self.ctx),
                        core_specs + bind_specs)

    def command(self, options: list[str]) -> list[str]:
        """The full ``apptainer instance start`` argv for ``options``."""
        # spython's Instance runs `singularity --quiet instance start` (the link to apptainer).
        return ["apptainer", "--quiet", "instance", "start", *options,
                str(self.settings.image_path), self.settings.name]

    def _bind_specs(self, host: HostChanges, binds: list[Bind]) -> list[str]:
        """Write content binds under the state folder (journaled); return ``--bind`` specs."""
        specs = []
        for bind in binds:
            if not bind.target.startswith("/"):
                raise ConfigError("binds", f"bind target {bind.target!r} is not absolute")
            if bind.content is not None:
                source = self.settings.state_dir / BIND_DIR / bind.target.lstrip("/")
                host.write_file(source, bind.content, bind.mode)
            elif bind.source is not None:
                source = bind.source
            else:
                raise ConfigError("binds", f"bind to {bind.target} has neither content nor source")
            specs.append(f"{source}:{bind.target}" + (":ro" if bind.readonly else ""))
        return specs

    # --- after instance start --------------------------------------------------------

    def after_start(self, host: HostChanges, instance: InstanceInfo) -> None:
        """post_start: finish the host once the instance's address is known."""
        self.hooks.post_start(self.ctx, host, instance)

    def endpoint(self, instance: InstanceInfo) -> Endpoint:
        """Where ColdFront answers: the first plugin that knows, else 127.0.0.1:80."""
        return self.hooks.readiness_endpoint(self.ctx, instance) or DEFAULT_ENDPOINT

