"""``[coldfront] scheduler``: whether django-q2's cluster (ColdFront's scheduled tasks:
allocation expiry, e-mails) runs in this instance.

Several instances on one database (hosts behind a load balancer) must run it once, or each
task runs once per host: ``scheduler = false`` on all but one masks its unit, with
``/dev/null`` bound over the unit file (systemd's own way of masking), so it never starts."""

from __future__ import annotations

from pathlib import Path

from coldfront_launch.config.settings import Settings
from coldfront_launch.types import Bind

UNIT = "coldfront-qcluster.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"


def binds(settings: Settings) -> list[Bind]:
    return [] if settings.coldfront.scheduler else [Bind(UNIT_FILE, source=Path("/dev/null"))]
