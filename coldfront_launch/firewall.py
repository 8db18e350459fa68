"""Where cf-launch 0.1's docs told plugin authors to import rulesets from.

Kept so those plugins keep working; new code imports ``Chain``, ``Jump`` and ``Ruleset``
from :mod:`coldfront_launch` (they live in :mod:`coldfront_launch.linux.netfilter`).
"""

from coldfront_launch.linux.netfilter import Chain, Jump, Ruleset

__all__ = ["Chain", "Jump", "Ruleset"]
