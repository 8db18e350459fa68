"""The exit codes of ``cf-launch``: one enum, used by the errors and the CLI.

The table of exit codes in docs/cli.md is checked against this enum by a test.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What a ``cf-launch`` exit status means."""

    #: The command did what was asked.
    OK = 0
    #: A failure that fits no other code (``stop``: done, but a plugin's hook failed).
    FAILURE = 1
    #: A setting or argument is invalid; nothing on the host was changed.
    CONFIG = 2
    #: A preflight check failed (or ``plan``/``doctor`` found a fatal problem); nothing changed.
    PREFLIGHT = 3
    #: An Apptainer command failed.
    APPTAINER = 4
    #: The instance started but was not ready in time; it is left running for inspection
    #: (``status``: a start that was cut short, or is still running).
    NOT_READY = 5
    #: A change to the host (file, sysctl, firewall, link) failed, or a journal line could
    #: not be read (``stop`` undoes the rest and names the line).
    HOST_CHANGE = 6
    #: Another cf-launch process holds this instance's lock.
    LOCKED = 7
    #: The instance is not running.
    NOT_RUNNING = 8
    #: ``status``: running, but a host change cf-launch made is missing (``cf-launch repair``).
    DRIFTED = 9
    #: The instance runs, and the command needs it stopped (``restore``); nothing changed.
    RUNNING = 10
    #: A backup archive is damaged, unsafe or not a cf-launch backup; nothing changed.
    BAD_ARCHIVE = 11
    #: ``restore``: the instance has data, and ``--force`` was not given; nothing changed.
    DATA_EXISTS = 12
    #: ``upgrade``: the new image failed; the previous image (and data) run again.
    ROLLED_BACK = 13
    #: ``upgrade``: the new image failed, and so did the rollback; the message says what is
    #: where (the pre-upgrade backup among it).
    ROLLBACK_FAILED = 14
    #: ``status``: running, but not healthy: systemd inside is not ``running`` (e.g.
    #: ``degraded``), or ColdFront answers no 2xx/3xx (the reason in the message and JSON).
    UNHEALTHY = 15
    #: Interrupted by Ctrl-C (SIGINT).
    INTERRUPTED = 130
    #: Ended by SIGTERM (``systemctl stop``, ``kill``); a start in progress undid itself.
    TERMINATED = 143
    #: A bug in cf-launch or a plugin: please report it (``CF_LAUNCH_DEBUG=1`` shows a traceback).
    INTERNAL = 70
