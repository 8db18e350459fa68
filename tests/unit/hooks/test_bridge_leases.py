"""The bridge's CNI lease: noted at post_start, removed once the instance is gone."""

from __future__ import annotations

import json
from pathlib import Path

from coldfront_launch.hooks.bridge import leases


def lease_file(folder: Path, ip: str, owner: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lease = folder / ip
    lease.write_text(f"{owner}\r\neth0")
    return lease


def test_the_noted_lease_is_removed_and_no_other(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    network = tmp_path / "cni" / "cf-launch"
    ours = lease_file(network, "10.22.0.5", "a1b2c3")
    other = lease_file(network, "10.22.0.6", "d4e5f6")
    leases.note(state, ours)
    assert (state / leases.NOTE).stat().st_mode & 0o777 == 0o600
    assert leases.release(state) == str(ours)
    assert not ours.exists() and other.exists()
    assert not (state / leases.NOTE).exists()
    assert leases.release(state) == "", "nothing noted: nothing done"


def test_a_lease_that_names_another_container_now_is_left(tmp_path: Path) -> None:
    """CNI released ours and gave the address to another instance: not ours to remove."""
    state = tmp_path / "state"
    state.mkdir()
    lease = lease_file(tmp_path / "cni" / "net", "10.22.0.5", "ours")
    leases.note(state, lease)
    lease.write_text("someone-else\r\neth0")
    assert leases.release(state) == ""
    assert lease.exists() and not (state / leases.NOTE).exists()


def test_no_lease_no_note(tmp_path: Path) -> None:
    leases.note(tmp_path, tmp_path / "missing")
    assert not (tmp_path / leases.NOTE).exists()
    (tmp_path / leases.NOTE).write_text("{not json")
    assert leases.release(tmp_path) == "" and not (tmp_path / leases.NOTE).exists()


def test_both_families_leases_are_released(tmp_path: Path) -> None:
    """With subnet6 the instance holds an IPv4 and an IPv6 lease: both go."""
    network = tmp_path / "networks" / "cf-launch"
    network.mkdir(parents=True)
    v4, v6 = network / "10.223.0.2", network / "fd42:cf:1::2"
    for lease in (v4, v6):
        lease.write_text("container-1\neth0\n")
    leases.note(tmp_path, v4)
    leases.note(tmp_path, v6)
    assert leases.release(tmp_path) == f"{v4}, {v6}"
    assert not v4.exists() and not v6.exists()


def test_a_note_from_before_ipv6_is_still_read(tmp_path: Path) -> None:
    lease = tmp_path / "10.22.0.2"
    lease.write_text("container-1\neth0\n")
    (tmp_path / leases.NOTE).write_text(json.dumps({"lease": str(lease),
                                                    "owner": "container-1"}))
    assert leases.release(tmp_path) == str(lease) and not lease.exists()
