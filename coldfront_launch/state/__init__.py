"""The files under ``<state_root>/<name>/``: the lock, the journal (plain records), the
launch record and the image pin. Nothing here knows what a host change is."""

from coldfront_launch.state.instance import InstanceState

__all__ = ["InstanceState"]
