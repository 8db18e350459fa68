"""Host changes: every kind, the journal that records them, undo, drift and repair.

Importing the package imports every kind (their classes register themselves when defined),
so a journal record is never read while the registry is half full.
"""

from coldfront_launch.changes.base import (
    HostChange,
    HostEnv,
    InstanceStopper,
    Reading,
    StopInstance,
    Unknown,
    from_record,
)
from coldfront_launch.changes.files import Directory, File, SharedFile, missing_dirs
from coldfront_launch.changes.rulesets import Firewall, IptablesTable, NftBaseChain
from coldfront_launch.changes.shared import Claim, Link, NetworkClaim, Offloads, Sysctl

__all__ = [
    "Claim", "Directory", "File", "Firewall", "HostChange", "HostEnv", "InstanceStopper",
    "IptablesTable", "Link", "NetworkClaim", "NftBaseChain", "Offloads", "Reading",
    "SharedFile", "StopInstance", "Sysctl", "Unknown", "from_record", "missing_dirs",
]
