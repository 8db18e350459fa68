"""``[coldfront] scheduler``: whether django-q2's cluster (ColdFront's scheduled tasks:
allocation expiry, e-mails) runs in this instance.

Several instances on one database (hosts behind a load balancer) must run it once, or each
task runs once per host: ``scheduler = false`` on all but one binds ``/dev/null`` over its
unit file: systemd then finds no such unit (``LoadState=not-found``), so it never starts,
and nothing that wants it fails (the system stays ``running``)."""

from __future__ import annotations

from pathlib import Path

from coldfront_launch.config.settings import Settings
from coldfront_launch.types import Bind

UNIT = "coldfront-qcluster.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"


def binds(settings: Settings) -> list[Bind]:
    return [] if settings.coldfront.scheduler else [Bind(UNIT_FILE, source=Path("/dev/null"))]
