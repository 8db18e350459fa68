"""An instance's life: :class:`~coldfront_launch.lifecycle.launcher.Launcher` (plan,
start, stop, restart, prepare, attach, detach, status, drift, repair, doctor), the launch
sequence that runs the hooks in order, what ``prepare`` prints, readiness, status,
doctor's checks and timing. Imports every layer below it; knows the network plugins only
through the hooks."""
