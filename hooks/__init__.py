"""The built-in network plugins: ``bridge`` (a CNI bridge with NAT in chains of its own)
and ``override`` (the host's network namespace, with systemd drop-ins). They implement the
same hooks as any third-party plugin, but are registered by import
(``coldfront_launch.plugins.BUILTIN``), not through entry points; ``metadata`` is the
instance-metadata guard both use."""
